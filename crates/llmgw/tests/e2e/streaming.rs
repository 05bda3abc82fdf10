//! Streaming behaviour: no buffering, cancellation, provider extras.

use std::time::Duration;

use futures_util::StreamExt as _;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::harness::{Gateway, chunks, content_of, request};

/// Reads the response until `count` content chunks have arrived, returning
/// when each arrived.
async fn content_arrivals(response: reqwest::Response, count: usize) -> Vec<Instant> {
    let mut arrivals = Vec::new();
    let mut stream = response.bytes_stream();
    let mut buffer = String::new();
    while arrivals.len() < count {
        let bytes = stream.next().await.expect("stream open").expect("bytes");
        buffer.push_str(&String::from_utf8_lossy(&bytes));
        while let Some(end) = buffer.find("\n\n") {
            let frame: String = buffer.drain(..end + 2).collect();
            if frame.contains(r#""content":"""#) || !frame.contains(r#""content""#) {
                continue; // role chunk or finish chunk
            }
            arrivals.push(Instant::now());
        }
    }
    arrivals
}

#[tokio::test]
async fn chunks_are_forwarded_the_moment_they_arrive() {
    let gateway = Gateway::start().await;
    let mut body = request("mock");
    body["stream"] = json!(true);
    body["mock"] = json!({"chunks": 2, "chunk_delay_ms": 1_500});
    let response = gateway.chat(body).await;
    let arrivals = content_arrivals(response, 2).await;
    // The mock waits 1.5 s between the two words; had any hop buffered,
    // both would arrive together. Half of it is the margin for a busy
    // machine delaying the first word.
    let gap = arrivals[1] - arrivals[0];
    assert!(
        gap >= Duration::from_millis(750),
        "chunk 1 arrived only {gap:?} before chunk 2"
    );
}

#[tokio::test]
async fn client_disconnect_closes_the_upstream_connection() {
    let gateway = Gateway::start().await;
    let mut body = request("mock");
    body["stream"] = json!(true);
    body["mock"] = json!({"chunks": 100, "chunk_delay_ms": 100});
    let response = gateway.chat(body).await;
    content_arrivals(response, 1).await; // and drop it mid-stream
    let stats = gateway
        .mock_stats_until(Duration::from_secs(30), |stats| {
            stats["active_responses"] == 0 && stats["open_connections"] == 0
        })
        .await;
    assert_eq!(
        stats["active_responses"], 0,
        "upstream stream still open: {stats}"
    );
    assert_eq!(
        stats["open_connections"], 0,
        "upstream connection still open: {stats}"
    );
}

#[tokio::test]
async fn a_silent_upstream_is_cancelled_when_the_client_leaves() {
    let gateway = Gateway::start_with(|config| config.router.timeouts.first_byte_ms = 60_000).await;
    let mut body = request("mock");
    body["mock"] = json!({"fault": "stall-first-byte"});
    let call = gateway.chat(body);
    // The client gives up while the upstream is still silent.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), call)
            .await
            .is_err()
    );
    let stats = gateway
        .mock_stats_until(Duration::from_secs(30), |stats| {
            stats["open_connections"] == 0
        })
        .await;
    assert_eq!(stats["requests_total"], 1);
    assert_eq!(stats["open_connections"], 0, "{stats}");
}

#[tokio::test]
async fn reasoning_content_passes_through() {
    let gateway = Gateway::start().await;
    let mut body = request("reasoner");
    let whole: Value = gateway.chat(body.clone()).await.json().await.expect("JSON");
    assert_eq!(
        whole["choices"][0]["message"]["reasoning_content"],
        "thinking thinking "
    );
    assert_eq!(
        whole["usage"]["completion_tokens_details"]["reasoning_tokens"],
        2
    );

    body["stream"] = json!(true);
    let (_, events) = gateway.stream(body).await;
    let chunks = chunks(&events);
    let reasoning: String = chunks
        .iter()
        .filter_map(|chunk| chunk["choices"][0]["delta"]["reasoning_content"].as_str())
        .collect();
    assert_eq!(reasoning, "thinking thinking ");
    assert_eq!(
        content_of(&chunks),
        whole["choices"][0]["message"]["content"]
            .as_str()
            .expect("content")
    );
}

#[tokio::test]
async fn concurrent_streams_are_independent() {
    let gateway = Gateway::start().await;
    let calls = (0..16).map(|n| {
        let mut body = request("mock");
        body["messages"][0]["content"] = json!(format!("prompt number {n}"));
        body["stream"] = json!(true);
        body["mock"] = json!({"chunks": 5, "chunk_delay_ms": 10});
        let gateway = &gateway;
        async move {
            let expected: Value = gateway
                .chat({
                    let mut plain = body.clone();
                    plain["stream"] = json!(false);
                    plain
                })
                .await
                .json()
                .await
                .expect("JSON");
            let (status, events) = gateway.stream(body).await;
            (
                status,
                content_of(&chunks(&events)),
                expected["choices"][0]["message"]["content"]
                    .as_str()
                    .map(str::to_owned),
            )
        }
    });
    for (status, streamed, expected) in futures_util::future::join_all(calls).await {
        assert_eq!(status, 200);
        assert_eq!(Some(streamed), expected);
    }
}
