//! Black-box tests of the injected faults.

use std::time::Duration;

use futures_util::StreamExt;
use llmgw_mock_upstream::Config;
use serde_json::{Value, json};

mod support;
use support::{Server, hello, sse_data};

#[tokio::test]
async fn status_faults() {
    let server = Server::start(Config::default()).await;
    let response = server
        .chat(hello(json!({"mock": {"fault": "429"}})))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "1");
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"]["type"], "requests");
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");

    let response = server
        .chat(hello(json!({"model": "mock-fault-500"})))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 500);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"]["type"], "server_error");

    let response = server
        .chat(hello(json!({"stream": true})))
        .header("x-mock-fault", "503")
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"]["code"], "service_unavailable");

    let response = server
        .chat(hello(json!({"mock": {"fault": "nope"}})))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert_eq!(body["error"]["param"], "mock.fault");

    let response = server
        .client
        .post(format!("{}/chat/completions", server.base))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"]["type"], "invalid_request_error");
}

#[tokio::test]
async fn body_faults() {
    let server = Server::start(Config::default()).await;
    let response = server
        .chat(hello(json!({"mock": {"fault": "invalid-json"}})))
        .send()
        .await;
    let response = response.expect("send");
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.expect("body"), r#"{"id": broken"#);

    let body = hello(json!({"stream": true, "mock": {"fault": "invalid-json"}}));
    let response = server.chat(body).send().await.expect("send");
    let data = sse_data(&response.text().await.expect("body"));
    assert_eq!(data, [r#"{"id": broken"#, "[DONE]"]);

    let response = server
        .chat(hello(json!({"mock": {"fault": "truncate"}})))
        .send()
        .await;
    let text = response.expect("send").text().await.expect("body");
    assert!(text.starts_with("{\""));
    assert!(serde_json::from_str::<Value>(&text).is_err());

    // Streaming: half the content, then the connection is cut.
    let body = hello(json!({"stream": true, "mock": {"fault": "truncate", "chunks": 4}}));
    let response = server.chat(body).send().await.expect("send");
    let mut stream = response.bytes_stream();
    let mut received = Vec::new();
    let mut failed = false;
    while let Some(item) = stream.next().await {
        match item {
            Ok(bytes) => received.extend_from_slice(&bytes),
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    assert!(failed, "a truncated stream must end in an error");
    let text = String::from_utf8(received).expect("utf-8");
    let data = sse_data(&text);
    assert_eq!(data.len(), 3, "role chunk and 2 of 4 words: {data:?}");
    assert!(!text.contains("[DONE]"));
}

#[tokio::test]
async fn stalls() {
    let server = Server::start(Config::default()).await;
    let stalled = server
        .chat(hello(json!({"model": "mock-fault-stall-first-byte"})))
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    assert!(stalled.expect_err("no headers").is_timeout());

    let body = hello(json!({"stream": true, "mock": {"fault": "stall-mid-stream", "chunks": 4}}));
    let response = server.chat(body).send().await.expect("headers arrive");
    let mut stream = response.bytes_stream();
    let mut text = String::new();
    // What comes before the stall (a generous deadline, however slow the
    // machine), then nothing more within a while: a busy machine can only
    // make this pass more easily, never fail it.
    tokio::time::timeout(Duration::from_secs(30), async {
        while sse_data(&text).len() < 3 {
            match stream.next().await {
                Some(bytes) => {
                    text.push_str(std::str::from_utf8(&bytes.expect("bytes")).expect("utf-8"))
                }
                None => panic!("stream ended instead of stalling"),
            }
        }
    })
    .await
    .expect("the events before the stall");
    let after = tokio::time::timeout(Duration::from_millis(300), stream.next()).await;
    assert!(after.is_err(), "the stream went on: {after:?}");
    assert_eq!(
        sse_data(&text).len(),
        3,
        "role chunk and 2 of 4 words: {text}"
    );
    drop(stream);
    server.wait_stat("active_responses", 0).await;
}

#[tokio::test]
async fn shutdown_ends_stalled_streams() {
    let mut server = Server::start(Config::default()).await;
    let body = hello(json!({"stream": true, "mock": {"fault": "stall-mid-stream"}}));
    let response = server.chat(body).send().await.expect("send");
    let stall = server
        .chat(hello(json!({"mock": {"fault": "stall-first-byte"}})))
        .send();
    let stall = tokio::spawn(stall);
    server.wait_stat("active_responses", 2).await;
    if let Some(stop) = server.stop.take() {
        let _ = stop.send(());
    }
    let finished = tokio::time::timeout(Duration::from_secs(2), &mut server.task).await;
    finished
        .expect("run returns")
        .expect("task")
        .expect("run ok");
    assert!(response.text().await.is_err());
    let stalled = stall.await.expect("task").expect("answered");
    assert_eq!(stalled.status(), 503);
}
