//! Black-box tests of the well-behaved paths: shapes, usage, timing, stats.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use llmgw_mock_upstream::Config;
use serde_json::{Value, json};

mod support;
use support::{Server, hello, hello_text, parse, sse_data};

#[tokio::test]
async fn non_streaming_shape_usage_and_stats() {
    let server = Server::start(Config::default()).await;
    let response = server.chat(hello(json!({}))).send().await.expect("send");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    assert!(
        body["id"]
            .as_str()
            .expect("id")
            .starts_with("chatcmpl-mock-")
    );
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], "mock");
    assert!(body["created"].as_u64().expect("created") > 1_600_000_000);
    let choice = &body["choices"][0];
    assert_eq!(choice["index"], 0);
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(choice["message"]["content"], hello_text(8));
    assert_eq!(choice["finish_reason"], "stop");
    // "Be brief." + "Hello!" = 15 chars -> ceil(15 / 4) = 4.
    assert_eq!(
        body["usage"],
        json!({"prompt_tokens": 4, "completion_tokens": 8, "total_tokens": 12,
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0}})
    );
    assert!(body.get("mock_request").is_none());

    let stats = server.stats().await;
    assert_eq!(stats["requests_total"], 1);
    assert_eq!(stats["last_request"]["body"], hello(json!({})));
    assert_eq!(
        stats["last_request"]["headers"]["content-type"],
        "application/json"
    );
    let reset = server
        .client
        .post(format!("{}/stats/reset", server.base))
        .send()
        .await;
    assert!(reset.expect("reset").status().is_success());
    let stats = server.stats().await;
    assert_eq!(stats["requests_total"], 0);
    assert_eq!(stats["last_request"], Value::Null);
}

#[tokio::test]
async fn streaming_with_usage() {
    let server = Server::start(Config::default()).await;
    let body = hello(
        json!({"stream": true, "stream_options": {"include_usage": true},
        "mock": {"chunks": 3}}),
    );
    let response = server.chat(body).send().await.expect("send");
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().expect("ascii");
    assert!(content_type.starts_with("text/event-stream"));
    let data = sse_data(&response.text().await.expect("body"));
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let chunks = parse(&data);
    // role, 3 words, finish, usage.
    assert_eq!(chunks.len(), 6);
    let id = &chunks[0]["id"];
    for chunk in &chunks {
        assert_eq!(&chunk["id"], id);
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert_eq!(chunk["model"], "mock");
        assert!(chunk.get("usage").is_some());
    }
    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    assert_eq!(chunks[0]["usage"], Value::Null);
    let text: String = chunks[1..4]
        .iter()
        .map(|chunk| {
            chunk["choices"][0]["delta"]["content"]
                .as_str()
                .expect("content")
        })
        .collect();
    assert_eq!(text, hello_text(3));
    assert_eq!(chunks[4]["choices"][0]["delta"], json!({}));
    assert_eq!(chunks[4]["choices"][0]["finish_reason"], "stop");
    assert_eq!(chunks[5]["choices"], json!([]));
    assert_eq!(chunks[5]["usage"]["completion_tokens"], 3);
    assert_eq!(chunks[5]["usage"]["total_tokens"], 7);
}

#[tokio::test]
async fn streaming_without_usage_has_no_usage_key() {
    let server = Server::start(Config::default()).await;
    let response = server
        .chat(hello(json!({"stream": true})))
        .send()
        .await
        .expect("send");
    let data = sse_data(&response.text().await.expect("body"));
    let chunks = parse(&data);
    assert_eq!(chunks.len(), 10);
    assert!(chunks.iter().all(|chunk| chunk.get("usage").is_none()));
    assert_eq!(chunks[9]["choices"][0]["finish_reason"], "stop");
}

#[tokio::test]
async fn max_tokens_stops_with_length() {
    let server = Server::start(Config::default()).await;
    let body = hello(json!({"max_completion_tokens": 2, "max_tokens": 5}));
    let body: Value = server
        .chat(body)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(body["choices"][0]["finish_reason"], "length");
    assert_eq!(body["choices"][0]["message"]["content"], hello_text(2));
    assert_eq!(body["usage"]["completion_tokens"], 2);

    let body = hello(json!({"max_tokens": 20, "stream": true}));
    let response = server.chat(body).send().await.expect("send");
    let chunks = parse(&sse_data(&response.text().await.expect("body")));
    assert_eq!(chunks[9]["choices"][0]["finish_reason"], "stop");
}

#[tokio::test]
async fn reasoner_thinks_first() {
    let server = Server::start(Config::default()).await;
    let body = hello(json!({"model": "deepseek-reasoner", "mock": {"chunks": 2}}));
    let body: Value = server
        .chat(body)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(
        body["choices"][0]["message"]["reasoning_content"],
        "thinking thinking "
    );
    assert_eq!(body["usage"]["completion_tokens"], 4);
    assert_eq!(
        body["usage"]["completion_tokens_details"]["reasoning_tokens"],
        2
    );

    let body = hello(json!({"model": "deepseek-reasoner", "mock": {"chunks": 2}, "stream": true}));
    let response = server.chat(body).send().await.expect("send");
    let chunks = parse(&sse_data(&response.text().await.expect("body")));
    let deltas: Vec<&Value> = chunks.iter().map(|c| &c["choices"][0]["delta"]).collect();
    assert_eq!(deltas[1], &json!({"reasoning_content": "thinking "}));
    assert_eq!(deltas[2], &json!({"reasoning_content": "thinking "}));
    assert_eq!(deltas[3]["content"], hello_text(1));
}

#[tokio::test]
async fn echo_returns_the_request() {
    let server = Server::start(Config::default()).await;
    let sent = hello(json!({"mock": {"echo": true}, "temperature": 0.5}));
    let body: Value = server
        .chat(sent.clone())
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(body["mock_request"], sent);

    let sent = hello(json!({"mock": {"echo": true}, "stream": true}));
    let response = server.chat(sent.clone()).send().await.expect("send");
    let chunks = parse(&sse_data(&response.text().await.expect("body")));
    assert_eq!(chunks[0]["mock_request"], sent);
    assert!(chunks[1].get("mock_request").is_none());
}

#[tokio::test]
async fn dropped_stream_releases_connection_and_response() {
    let server = Server::start(Config::default()).await;
    // Without pooling the observer closes its connection after each answer,
    // so once the chat client is gone only the observer's own is open.
    let observer = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    let stats = || async {
        let response = observer.get(format!("{}/stats", server.base)).send().await;
        response
            .expect("stats")
            .json::<Value>()
            .await
            .expect("json")
    };

    let client = reqwest::Client::new();
    let body = hello(json!({"stream": true, "mock": {"chunks": 100, "chunk_delay_ms": 50}}));
    let url = format!("{}/v1/chat/completions", server.base);
    let response = client.post(&url).json(&body).send().await.expect("send");
    let mut stream = response.bytes_stream();
    stream.next().await.expect("first chunk").expect("bytes");
    let during = stats().await;
    assert_eq!(during["active_responses"], 1);
    assert!(
        during["open_connections"].as_u64().expect("count") >= 1,
        "{during}"
    );

    drop(stream);
    drop(client);
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let after = stats().await;
        // The connection asking for /stats is not counted.
        if after["open_connections"] == 0 && after["active_responses"] == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "not released: {after}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn chunks_are_paced() {
    let server = Server::start(Config {
        chunk_delay_ms: 1_000,
        ..Config::default()
    })
    .await;
    let body = hello(json!({"stream": true, "mock": {"chunks": 2}}));
    let response = server.chat(body).send().await.expect("send");
    let mut stream = response.bytes_stream();
    let mut buffer = String::new();
    let mut arrivals = Vec::new();
    while let Some(bytes) = stream.next().await {
        buffer.push_str(std::str::from_utf8(&bytes.expect("bytes")).expect("utf-8"));
        while let Some(end) = buffer.find("\n\n") {
            arrivals.push((buffer[..end].to_owned(), Instant::now()));
            buffer.drain(..end + 2);
        }
        if arrivals.len() >= 3 {
            break;
        }
    }
    // Events 1 and 2 are the first two content chunks.
    let gap = arrivals[2].1 - arrivals[1].1;
    assert!(gap >= Duration::from_millis(500), "chunks {gap:?} apart");
}

#[tokio::test]
async fn first_byte_latency_delays_headers() {
    let server = Server::start(Config::default()).await;
    let start = Instant::now();
    let response = server
        .chat(hello(json!({"stream": true})))
        .header("x-mock-first-byte-latency-ms", "200")
        .send()
        .await
        .expect("send");
    assert!(start.elapsed() >= Duration::from_millis(190));
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn api_key_and_models() {
    let server = Server::start(Config {
        api_key: Some("sk-test".to_owned()),
        ..Config::default()
    })
    .await;
    let response = server.chat(hello(json!({}))).send().await.expect("send");
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"]["code"], "invalid_api_key");
    let response = server
        .chat(hello(json!({})))
        .bearer_auth("wrong")
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 401);
    let response = server
        .chat(hello(json!({})))
        .bearer_auth("sk-test")
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200);

    let models: Value = server
        .client
        .get(format!("{}/v1/models", server.base))
        .bearer_auth("sk-test")
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(models["object"], "list");
    let ids: Vec<&str> = models["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert_eq!(ids, ["mock", "mock-reasoner"]);
}

#[tokio::test]
async fn given_content_streams_piece_by_piece_in_writes_of_one_byte() {
    let server = Server::start(Config::default()).await;
    let body =
        hello(json!({"stream": true, "mock": {"content": ["敏感", "词 ok"], "write_bytes": 1}}));
    let response = server.chat(body).send().await.expect("send");
    let mut stream = response.bytes_stream();
    let mut raw = Vec::new();
    let mut frames = 0;
    while let Some(bytes) = stream.next().await {
        raw.extend_from_slice(&bytes.expect("bytes"));
        frames += 1;
    }
    // Written one byte at a time: the client reads it in many pieces (how
    // many depends on its reads, never fewer than the events).
    assert!(frames > 5, "{frames} reads");
    let data = sse_data(&String::from_utf8(raw).expect("UTF-8 once joined"));
    let chunks = parse(&data);
    let pieces: Vec<&str> = chunks
        .iter()
        .filter_map(|chunk| chunk["choices"][0]["delta"]["content"].as_str())
        .filter(|text| !text.is_empty())
        .collect();
    assert_eq!(pieces, ["敏感", "词 ok"]);

    // Non-streaming: the pieces joined; one token each.
    let body: Value = server
        .chat(hello(json!({"mock": {"content": ["敏感", "词"]}})))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(body["choices"][0]["message"]["content"], "敏感词");
    assert_eq!(body["usage"]["completion_tokens"], 2);
}
