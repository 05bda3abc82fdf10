//! Admission control: past `max_in_flight`, requests are refused at once
//! with 503 `overloaded` (before their body is read), while the streams
//! already admitted run to their end; places come back as streams end.

use std::time::Duration;

use futures_util::StreamExt as _;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::harness::{Gateway, KEY, request};

fn slow_stream() -> Value {
    let mut body = request("mock");
    body["stream"] = json!(true);
    body["mock"] = json!({"chunks": 30, "chunk_delay_ms": 100});
    body
}

/// Reads a stream to its end; returns its text.
async fn read_all(response: reqwest::Response) -> String {
    let mut text = String::new();
    let mut stream = response.bytes_stream();
    while let Some(bytes) = stream.next().await {
        text.push_str(&String::from_utf8_lossy(&bytes.expect("bytes")));
    }
    text
}

/// Sends a chat request's head only, announcing a body it never sends, and
/// returns whatever the edge answers.
async fn head_without_body(gateway: &Gateway) -> String {
    let mut tcp = TcpStream::connect(gateway.edge).await.expect("connect");
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: edge\r\nAuthorization: Bearer {KEY}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n"
    );
    tcp.write_all(head.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    // Generous: an edge that waited for the body would never answer.
    tokio::time::timeout(Duration::from_secs(30), tcp.read_to_end(&mut answer))
        .await
        .expect("the edge answered without waiting for the body")
        .expect("read");
    String::from_utf8_lossy(&answer).into_owned()
}

/// Reads one response with a `content-length` body off `tcp`.
async fn read_response(tcp: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let mut byte = [0u8; 1];
    while !answer.ends_with(b"\r\n\r\n") {
        let read = tcp.read(&mut byte).await.expect("read");
        assert_eq!(
            read,
            1,
            "the connection closed: {}",
            String::from_utf8_lossy(&answer)
        );
        answer.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&answer).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length: "))
        .expect("content-length")
        .trim()
        .parse()
        .expect("a length");
    let mut body = vec![0u8; length];
    tcp.read_exact(&mut body).await.expect("body");
    answer.extend(body);
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn past_the_limit_requests_are_refused_at_once_and_admitted_streams_finish() {
    let gateway = Gateway::start_with(|config| config.edge.max_in_flight = 2).await;
    let first = gateway.chat(slow_stream()).await;
    let second = gateway.chat(slow_stream()).await;
    assert_eq!(first.status(), 200);
    assert_eq!(second.status(), 200);
    let streams = [
        tokio::spawn(read_all(first)),
        tokio::spawn(read_all(second)),
    ];

    // Both places are taken until the streams end (three seconds or so).
    let answer = head_without_body(&gateway).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 1"),
        "{answer}"
    );
    let body: Value = serde_json::from_str(&answer[answer.find("\r\n\r\n").expect("head") + 4..])
        .expect("an OpenAI error body");
    assert_eq!(body["error"]["code"], "overloaded");
    assert_eq!(body["error"]["type"], "server_error");
    let refused = gateway.chat(request("mock")).await;
    assert_eq!(refused.status(), 503);
    // A refused client keeps its connection for the retry (hyper drains a
    // small unread body): a reconnect per refusal would cost more than the
    // refusals under overload.
    let mut tcp = TcpStream::connect(gateway.edge).await.expect("connect");
    let body = request("mock").to_string();
    let full_request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: edge\r\nAuthorization: Bearer {KEY}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    for attempt in ["first", "retry on the same connection"] {
        tcp.write_all(full_request.as_bytes()).await.expect("write");
        let answer = tokio::time::timeout(Duration::from_secs(30), read_response(&mut tcp))
            .await
            .expect("answered");
        assert!(answer.starts_with("HTTP/1.1 503"), "{attempt}: {answer}");
    }
    // In Anthropic's protocol: its 529 overloaded_error, which its SDKs retry.
    let refused = gateway
        .client
        .post(gateway.url("/v1/messages"))
        .header("x-api-key", KEY)
        .header("anthropic-version", "2023-06-01")
        .json(&json!({"model": "mock", "max_tokens": 16,
                      "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .expect("reachable");
    assert_eq!(refused.status(), 529);
    let body: Value = refused.json().await.expect("json");
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "overloaded_error");
    // Health and metrics are never refused.
    let health = gateway.client.get(gateway.url("/healthz")).send().await;
    assert_eq!(health.expect("reachable").status(), 200);

    for stream in streams {
        let text = stream.await.expect("stream task");
        assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    }
    // Places are back: requests are admitted again.
    let answer = gateway.chat(request("mock")).await;
    assert_eq!(answer.status(), 200);
    let metrics = gateway.metrics().await;
    // Five refusals: the bare head, the chat call, the two on one
    // connection, the Messages call.
    assert!(
        metrics.contains("llmgw_edge_overloaded_total 5"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_client_that_hangs_up_gives_its_place_back() {
    let gateway = Gateway::start_with(|config| config.edge.max_in_flight = 1).await;
    let mut body = request("mock");
    body["stream"] = json!(true);
    body["mock"] = json!({"chunks": 1000, "chunk_delay_ms": 100});
    let response = gateway.chat(body).await;
    assert_eq!(response.status(), 200);
    assert_eq!(gateway.chat(request("mock")).await.status(), 503);
    drop(response);
    // The edge notices the hang-up when it next writes (within a chunk).
    let start = std::time::Instant::now();
    loop {
        let status = gateway.chat(request("mock")).await.status();
        if status == 200 {
            break;
        }
        assert_eq!(status, 503);
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the place never came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
