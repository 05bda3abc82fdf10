//! Upstream and dependency failures, as the client sees them.

use std::time::Duration;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::harness::{Gateway, KEY, chunks, content_of, error_of, request};

fn faulty(fault: &str, stream: bool) -> Value {
    let mut body = request("mock");
    body["stream"] = json!(stream);
    body["mock"] = json!({"fault": fault, "chunks": 6});
    body
}

#[tokio::test]
async fn upstream_errors_before_the_first_byte_map_to_http_statuses() {
    // One attempt each, and no breaker: this test is about the mapping.
    let gateway = Gateway::start_with(|config| {
        config.router.retries.max_retries = 0;
        config.router.breaker.consecutive_failures = 0;
        config.router.breaker.min_requests = u32::MAX;
    })
    .await;
    let cases = [
        ("429", 429, "upstream_rate_limited"),
        ("500", 502, "upstream_error"),
        ("503", 502, "upstream_error"),
        ("invalid-json", 502, "upstream_error"),
        ("stall-first-byte", 504, "upstream_timeout"),
    ];
    for stream in [false, true] {
        for (fault, status, code) in cases {
            let response = gateway.chat(faulty(fault, stream)).await;
            let retry_after = response.headers().get("retry-after").cloned();
            let (got, error) = error_of(response).await;
            assert_eq!(got, status, "{fault} stream={stream}: {error}");
            assert_eq!(error["code"], code, "{fault} stream={stream}");
            if status == 429 {
                assert!(retry_after.is_some(), "429 carries Retry-After");
            }
            // Upstream bodies stay in our logs, never reach the client.
            assert!(
                !error["message"].as_str().expect("message").contains("mock"),
                "{error}"
            );
        }
    }
}

#[tokio::test]
async fn connection_refused_is_502() {
    let gateway = Gateway::start().await;
    for stream in [false, true] {
        let mut body = request("dead");
        body["stream"] = json!(stream);
        let (status, error) = error_of(gateway.chat(body).await).await;
        assert_eq!(status, 502);
        assert_eq!(error["code"], "upstream_error");
    }
}

#[tokio::test]
async fn a_cut_stream_ends_with_an_error_event_and_no_duplicates() {
    let gateway = Gateway::start().await;
    let (status, events) = gateway.stream(faulty("truncate", true)).await;
    assert_eq!(status, 200, "headers were sent before the cut");
    assert_ne!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks = chunks(&events);
    let (error, content) = chunks.split_last().expect("events");
    assert_eq!(error["error"]["code"], "upstream_error", "{error}");
    // The mock cuts after half of its 6 words; each arrives exactly once.
    assert_eq!(content_of(content).split_whitespace().count(), 3);
    assert!(content.iter().all(|chunk| chunk.get("error").is_none()));
}

#[tokio::test]
async fn a_stalled_stream_ends_with_a_timeout_event() {
    let gateway = Gateway::start().await;
    let (status, events) = gateway.stream(faulty("stall-mid-stream", true)).await;
    assert_eq!(status, 200);
    let chunks = chunks(&events);
    let error = chunks.last().expect("events");
    assert_eq!(error["error"]["code"], "upstream_timeout", "{error}");
    assert_eq!(error["error"]["type"], "server_error");
}

#[tokio::test]
async fn router_unreachable_means_not_ready_and_503() {
    let stop = CancellationToken::new();
    let mut config = crate::harness::config("127.0.0.1:9".parse().expect("addr")).await;
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    config.edge.router_url = format!("http://{}", dead.local_addr().expect("addr"));
    drop(dead);
    let listen = config.edge.listen;
    let (edge, services) = llmgw::start_one(llmgw::Role::Edge, config, listen, stop.clone())
        .await
        .expect("edge starts");
    let client = reqwest::Client::new();
    let ready = client
        .get(format!("http://{edge}/readyz"))
        .send()
        .await
        .expect("reachable");
    assert_eq!(ready.status(), 503);
    let response = client
        .post(format!("http://{edge}/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&request("mock"))
        .send()
        .await
        .expect("reachable");
    let (status, error) = error_of(response).await;
    assert_eq!(status, 503);
    assert_eq!(error["code"], "service_unavailable");
    // Liveness does not depend on the router.
    let alive = client
        .get(format!("http://{edge}/healthz"))
        .send()
        .await
        .expect("reachable");
    assert_eq!(alive.status(), 200);
    stop.cancel();
    tokio::time::timeout(
        Duration::from_secs(10),
        services.wait(Duration::from_secs(5)),
    )
    .await
    .expect("edge stops")
    .expect("edge stops cleanly");
}

/// A provider's 429 says when to come back; the client is told the same,
/// not a made-up second.
#[tokio::test]
async fn a_providers_retry_after_reaches_the_client() {
    let gateway = Gateway::start_with(|config| {
        config.router.retries.max_retries = 0;
        config.router.breaker.consecutive_failures = 0;
        config.router.breaker.min_requests = u32::MAX;
    })
    .await;
    for stream in [false, true] {
        let mut body = faulty("429", stream);
        body["mock"]["retry_after_secs"] = json!(7);
        let response = gateway.chat(body).await;
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()["retry-after"], "7", "stream={stream}");
    }
}
