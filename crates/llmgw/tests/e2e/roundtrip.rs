//! The happy paths: JSON and streaming answers, models, health, metrics.

use serde_json::{Value, json};

use crate::harness::{Gateway, KEY, chunks, content_of, request};

#[tokio::test]
async fn json_completion_round_trip() {
    let gateway = Gateway::start().await;
    let response = gateway.chat(request("mock")).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("x-request-id"));
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["choices"][0]["message"]["role"], "assistant");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    let content = body["choices"][0]["message"]["content"]
        .as_str()
        .expect("content");
    assert_eq!(
        content.split_whitespace().count(),
        8,
        "the mock's default is 8 words"
    );
    assert_eq!(body["usage"]["completion_tokens"], 8);
    // "Hello there" is 11 characters: the mock counts ceil(11 / 4) tokens.
    assert_eq!(body["usage"]["prompt_tokens"], 3);
}

#[tokio::test]
async fn streaming_round_trip_ends_with_finish_reason_and_done() {
    let gateway = Gateway::start().await;
    let mut body = request("mock");
    body["stream"] = json!(true);
    let (status, events) = gateway.stream(body.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks = chunks(&events);
    assert!(
        chunks
            .iter()
            .all(|chunk| chunk["object"] == "chat.completion.chunk")
    );
    let last = chunks.last().expect("chunks");
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    // The client did not ask for usage: the usage-only chunk is not sent.
    assert!(
        chunks
            .iter()
            .all(|chunk| !chunk["choices"].as_array().expect("choices").is_empty())
    );

    // The same prompt, not streamed, gives the same text.
    body["stream"] = json!(false);
    let whole: Value = gateway.chat(body).await.json().await.expect("JSON");
    assert_eq!(
        content_of(&chunks),
        whole["choices"][0]["message"]["content"]
            .as_str()
            .expect("content")
    );
}

#[tokio::test]
async fn streaming_with_include_usage_ends_with_the_usage_chunk() {
    let gateway = Gateway::start().await;
    let mut body = request("mock");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    body["mock"] = json!({"chunks": 5});
    let (_, events) = gateway.stream(body).await;
    let chunks = chunks(&events);
    let usage_chunk = chunks.last().expect("chunks");
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(usage_chunk["usage"]["completion_tokens"], 5);
    assert_eq!(usage_chunk["usage"]["prompt_tokens"], 3);
    assert_eq!(usage_chunk["usage"]["total_tokens"], 8);
}

#[tokio::test]
async fn max_tokens_cut_reports_length() {
    let gateway = Gateway::start().await;
    let mut body = request("mock");
    body["max_tokens"] = json!(3);
    let body: Value = gateway.chat(body).await.json().await.expect("JSON");
    assert_eq!(body["choices"][0]["finish_reason"], "length");
    assert_eq!(body["usage"]["completion_tokens"], 3);
}

#[tokio::test]
async fn models_lists_every_alias_for_a_valid_key_only() {
    let gateway = Gateway::start().await;
    let response = gateway
        .client
        .get(gateway.url("/v1/models"))
        .bearer_auth(KEY)
        .send()
        .await
        .expect("reachable");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["object"], "list");
    let ids: Vec<&str> = body["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|model| model["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, ["dead", "mock", "reasoner"]);

    let anonymous = gateway
        .client
        .get(gateway.url("/v1/models"))
        .send()
        .await
        .expect("reachable");
    assert_eq!(anonymous.status(), 401);
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let gateway = Gateway::start().await;
    for path in ["/healthz", "/readyz"] {
        let response = gateway
            .client
            .get(gateway.url(path))
            .send()
            .await
            .expect("reachable");
        assert_eq!(response.status(), 200, "{path}");
    }
    assert_eq!(gateway.chat(request("mock")).await.status(), 200);
    assert_eq!(gateway.chat(request("no-such-model")).await.status(), 404);
    let metrics = gateway.metrics().await;
    assert!(
        metrics.contains(
            r#"llmgw_edge_requests_total{route="chat_completions",model="mock",status="200"} 1"#
        ),
        "{metrics}"
    );
    // An unknown model name is not a label (clients would blow up cardinality).
    assert!(
        metrics.contains(r#"model="unknown",status="404"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"llmgw_edge_tokens_total{model="mock",kind="completion"} 8"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("llmgw_edge_request_duration_seconds_bucket"),
        "{metrics}"
    );
}

#[tokio::test]
async fn unknown_route_is_an_openai_style_404() {
    let gateway = Gateway::start().await;
    let response = gateway
        .client
        .get(gateway.url("/v1/nothing"))
        .send()
        .await
        .expect("reachable");
    let (status, error) = crate::harness::error_of(response).await;
    assert_eq!(status, 404);
    assert_eq!(error["type"], "invalid_request_error");
}
