//! `POST /v1/messages` end to end: passed through to an Anthropic
//! deployment (the mock's Messages route) and translated for an
//! OpenAI-compatible one (its chat route), JSON and streamed, errors in
//! Anthropic's shape, `count_tokens`, and the models list in Anthropic's
//! shape. The mock answers both routes with the same words for the same
//! prompt, so the two paths can be compared with each other and with the
//! mock itself.

use std::net::SocketAddr;

use llmgw::GatewayConfig;
use llmgw_router::{ClientApi, Provider};
use serde_json::{Value, json};

use crate::harness::{Gateway, KEY, model};

/// The test models next to the harness's `mock` (OpenAI-compatible):
/// `claude` and `claude-reasoner` (Anthropic deployments of the mock),
/// `claude-429` and `mock-429` (always rate limited), and `embed`
/// (embeddings only).
pub(crate) fn protocol_models(config: &mut GatewayConfig) {
    let base = config.router.models[0]
        .base_url
        .clone()
        .expect("harness mock model");
    let anthropic = |alias: &str, upstream: &str| {
        let mut model = model(alias, base.clone(), upstream);
        model.provider = Some(Provider::Anthropic);
        model.input_price_per_mtok = Some("3".to_owned());
        model.output_price_per_mtok = Some("15".to_owned());
        model.cache_read_price_per_mtok = Some("0.30".to_owned());
        model.cache_write_price_per_mtok = Some("3.75".to_owned());
        model
    };
    let mut embed = model("embed", base.clone(), "text-embedding-mock");
    embed.apis = Some(vec![ClientApi::Embeddings]);
    embed.input_price_per_mtok = Some("0.02".to_owned());
    config.router.models.extend([
        anthropic("claude", "mock"),
        anthropic("claude-reasoner", "mock-reasoner"),
        anthropic("claude-429", "mock-fault-429"),
        model("mock-429", base.clone(), "mock-fault-429"),
        embed,
    ]);
    // Faults are answered as they are, not retried.
    config.router.retries.max_retries = 0;
    config.router.breaker.consecutive_failures = 0;
    config.router.breaker.min_requests = u32::MAX;
}

pub(crate) async fn gateway() -> Gateway {
    Gateway::start_with(protocol_models).await
}

/// A Messages call with Anthropic's headers and the key in `x-api-key`.
pub(crate) async fn messages(gateway: &Gateway, body: &Value) -> reqwest::Response {
    gateway
        .client
        .post(gateway.url("/v1/messages"))
        .header("x-api-key", KEY)
        .header("anthropic-version", "2023-06-01")
        .json(body)
        .send()
        .await
        .expect("edge reachable")
}

/// The same call made to the mock directly (its Messages route).
async fn mock_messages(client: &reqwest::Client, mock: SocketAddr, body: &Value) -> Value {
    client
        .post(format!("http://{mock}/v1/messages"))
        .header("anthropic-version", "2023-06-01")
        .json(body)
        .send()
        .await
        .expect("mock reachable")
        .json()
        .await
        .expect("JSON")
}

/// `(event name, data)` of an SSE body, checking Anthropic's framing.
pub(crate) fn events(body: &str) -> Vec<(String, Value)> {
    body.split("\n\n")
        .filter(|frame| !frame.is_empty() && !frame.starts_with(':'))
        .map(|frame| {
            let (name, data) = frame
                .strip_prefix("event: ")
                .and_then(|frame| frame.split_once("\ndata: "))
                .unwrap_or_else(|| panic!("not an Anthropic event: {frame:?}"));
            let data: Value = serde_json::from_str(data).expect("event JSON");
            assert_eq!(data["type"], name, "event name = its type");
            (name.to_owned(), data)
        })
        .collect()
}

fn names(events: &[(String, Value)]) -> Vec<&str> {
    events.iter().map(|(name, _)| name.as_str()).collect()
}

/// The concatenated `field` of every delta of type `kind`.
fn deltas(events: &[(String, Value)], kind: &str, field: &str) -> String {
    events
        .iter()
        .filter(|(_, data)| data["delta"]["type"] == kind)
        .filter_map(|(_, data)| data["delta"][field].as_str())
        .collect()
}

fn text_of(message: &Value) -> String {
    message["content"]
        .as_array()
        .expect("content")
        .iter()
        .filter(|block| block["type"] == "text")
        .filter_map(|block| block["text"].as_str())
        .collect()
}

fn hello(model: &str) -> Value {
    json!({"model": model, "max_tokens": 64, "system": "Be brief.",
           "messages": [{"role": "user", "content": "Hello!"}]})
}

#[tokio::test]
async fn native_json_goes_upstream_as_sent_and_comes_back_as_answered() {
    let gateway = gateway().await;
    let body = json!({
        "model": "claude",
        "max_tokens": 64,
        "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hello!"}]}],
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "metadata": {"user_id": "u-1"},
        "top_k": 5,
    });
    let response = gateway
        .client
        .post(gateway.url("/v1/messages"))
        .header("x-api-key", KEY)
        .header("anthropic-version", "2023-06-01")
        .header("anthropic-beta", "interleaved-thinking-2025-05-14")
        .json(&body)
        .send()
        .await
        .expect("edge reachable");
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("request-id"));
    let answer: Value = response.json().await.expect("JSON");

    // Upstream saw the client's body with the model replaced, and its
    // version headers; never the client's key.
    let seen = gateway.mock_stats().await["last_request"].clone();
    let mut upstream_body = body.clone();
    upstream_body["model"] = json!("mock");
    assert_eq!(seen["body"], upstream_body);
    assert_eq!(seen["headers"]["anthropic-version"], "2023-06-01");
    assert_eq!(
        seen["headers"]["anthropic-beta"],
        "interleaved-thinking-2025-05-14"
    );
    assert!(seen["headers"].get("x-api-key").is_none(), "{seen}");

    // The answer is the mock's own, byte for byte but the id.
    let mut direct = mock_messages(&gateway.client, gateway.mock, &upstream_body).await;
    direct["id"] = answer["id"].clone();
    assert_eq!(answer, direct);
    assert_eq!(answer["type"], "message");
    assert_eq!(answer["stop_reason"], "end_turn");
}

#[tokio::test]
async fn native_stream_is_anthropics_own_event_sequence() {
    let gateway = gateway().await;
    let mut body = hello("claude-reasoner");
    body["stream"] = json!(true);
    let response = messages(&gateway, &body).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let gateway_events = events(&response.text().await.expect("body"));

    let mut direct_body = body.clone();
    direct_body["model"] = json!("mock-reasoner");
    let direct = gateway
        .client
        .post(format!("http://{}/v1/messages", gateway.mock))
        .header("anthropic-version", "2023-06-01")
        .json(&direct_body)
        .send()
        .await
        .expect("mock")
        .text()
        .await
        .expect("body");
    let mut direct_events = events(&direct);
    // Only the message id differs (the mock numbers its messages).
    direct_events[0].1["message"]["id"] = gateway_events[0].1["message"]["id"].clone();
    assert_eq!(gateway_events, direct_events);
    assert_eq!(
        names(&gateway_events)[..4],
        [
            "message_start",
            "ping",
            "content_block_start",
            "content_block_delta"
        ]
    );
    // Thinking keeps its signature: nothing was translated.
    assert_eq!(
        deltas(&gateway_events, "signature_delta", "signature"),
        "bW9jay1zaWduYXR1cmU="
    );
    assert_eq!(names(&gateway_events).last(), Some(&"message_stop"));
}

#[tokio::test]
async fn openai_upstream_answers_in_anthropics_shape_json_and_streamed() {
    let gateway = gateway().await;
    // `mock` is an OpenAI-compatible deployment of the mock.
    let whole = messages(&gateway, &hello("mock")).await;
    assert_eq!(whole.status(), 200);
    let whole: Value = whole.json().await.expect("JSON");
    assert_eq!(whole["type"], "message");
    assert_eq!(whole["role"], "assistant");
    assert_eq!(whole["stop_reason"], "end_turn");
    // The same words as the mock's own Messages route.
    let mut direct = hello("mock");
    direct["model"] = json!("mock-upstream-model");
    let direct = mock_messages(&gateway.client, gateway.mock, &direct).await;
    assert_eq!(text_of(&whole), text_of(&direct));
    assert_eq!(whole["usage"], direct["usage"]);

    let mut body = hello("mock");
    body["stream"] = json!(true);
    let streamed = messages(&gateway, &body).await;
    assert_eq!(streamed.status(), 200);
    let events = events(&streamed.text().await.expect("body"));
    let words = text_of(&whole).split_whitespace().count();
    let mut expected = vec!["message_start", "ping", "content_block_start"];
    expected.extend(std::iter::repeat_n("content_block_delta", words));
    expected.extend(["content_block_stop", "message_delta", "message_stop"]);
    assert_eq!(names(&events), expected);
    assert_eq!(deltas(&events, "text_delta", "text"), text_of(&whole));
    let (_, end) = &events[events.len() - 2];
    assert_eq!(end["delta"]["stop_reason"], "end_turn");
    assert_eq!(end["usage"], whole["usage"]);
}

#[tokio::test]
async fn openai_upstream_thinks_and_calls_tools_in_anthropics_shape() {
    let gateway = gateway().await;
    let tools = json!([{"name": "get_weather", "description": "Weather by city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]);
    let body = json!({"model": "mock", "max_tokens": 64, "tools": tools, "stream": true,
        "messages": [{"role": "user", "content": "What's the weather in Paris?"}]});
    let response = messages(&gateway, &body).await;
    assert_eq!(response.status(), 200);
    let events = events(&response.text().await.expect("body"));
    let start = events
        .iter()
        .find(|(name, _)| name == "content_block_start")
        .expect("a block");
    assert_eq!(start.1["content_block"]["type"], "tool_use");
    assert_eq!(start.1["content_block"]["name"], "get_weather");
    let input: Value =
        serde_json::from_str(&deltas(&events, "input_json_delta", "partial_json")).expect("JSON");
    assert_eq!(input, json!({"city": "Paris"}));
    let (_, end) = &events[events.len() - 2];
    assert_eq!(end["delta"]["stop_reason"], "tool_use");

    // The tool's result goes back as OpenAI's `tool` message: text follows.
    let id = start.1["content_block"]["id"].clone();
    let answered = json!({"model": "mock", "max_tokens": 64, "tools": tools, "messages": [
        {"role": "user", "content": "What's the weather in Paris?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": id, "name": "get_weather", "input": input}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": id, "content": "18°C"}]}]});
    let answer: Value = messages(&gateway, &answered)
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(answer["stop_reason"], "end_turn", "{answer}");
    let seen = gateway.mock_stats().await["last_request"]["body"].clone();
    assert_eq!(seen["messages"][2]["role"], "tool");
    assert_eq!(seen["messages"][2]["tool_call_id"], id);

    // A reasoning model's reasoning is a thinking block.
    let answer: Value = messages(&gateway, &hello("reasoner"))
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(answer["content"][0]["type"], "thinking");
    assert_eq!(answer["content"][0]["thinking"], "thinking thinking ");
    assert_eq!(answer["content"][1]["type"], "text");
}

/// An error answer's status and Anthropic body.
async fn anthropic_error(response: reqwest::Response) -> (u16, String, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("JSON error");
    assert_eq!(body["type"], "error", "{body}");
    (
        status,
        body["error"]["type"].as_str().unwrap_or("").to_owned(),
        body["error"]["message"].as_str().unwrap_or("").to_owned(),
    )
}

#[tokio::test]
async fn errors_have_anthropics_shape_and_statuses() {
    let gateway = gateway().await;
    let unauthenticated = gateway
        .client
        .post(gateway.url("/v1/messages"))
        .header("x-api-key", "sk-llmgw-wrong-0000000000000000")
        .json(&hello("claude"))
        .send()
        .await
        .expect("edge");
    let (status, kind, _) = anthropic_error(unauthenticated).await;
    assert_eq!((status, kind.as_str()), (401, "authentication_error"));

    let (status, kind, _) = anthropic_error(messages(&gateway, &hello("nope")).await).await;
    assert_eq!((status, kind.as_str()), (404, "not_found_error"));

    let mut no_max = hello("claude");
    no_max.as_object_mut().map(|body| body.remove("max_tokens"));
    let (status, kind, message) = anthropic_error(messages(&gateway, &no_max).await).await;
    assert_eq!((status, kind.as_str()), (400, "invalid_request_error"));
    assert!(message.contains("max_tokens"), "{message}");

    let (status, kind, message) = anthropic_error(messages(&gateway, &hello("embed")).await).await;
    assert_eq!((status, kind.as_str()), (400, "invalid_request_error"));
    assert!(
        message.contains("does not serve the Messages API"),
        "{message}"
    );

    for alias in ["claude-429", "mock-429"] {
        let response = messages(&gateway, &hello(alias)).await;
        assert!(response.headers().contains_key("retry-after"), "{alias}");
        let (status, kind, _) = anthropic_error(response).await;
        assert_eq!(
            (status, kind.as_str()),
            (429, "rate_limit_error"),
            "{alias}"
        );
    }

    // A stream cut mid-way ends with Anthropic's `error` event.
    let mut cut = hello("claude");
    cut["stream"] = json!(true);
    cut["mock"] = json!({"fault": "truncate", "chunks": 6});
    let response = messages(&gateway, &cut).await;
    assert_eq!(response.status(), 200);
    let events = events(&response.text().await.expect("body"));
    let (name, data) = events.last().expect("events");
    assert_eq!(name, "error");
    assert_eq!(data["error"]["type"], "api_error");
    assert!(!deltas(&events, "text_delta", "text").is_empty());
}

#[tokio::test]
async fn count_tokens_and_models_in_anthropics_shape() {
    let gateway = gateway().await;
    let count = |model: &str| {
        let client = gateway.client.clone();
        let url = gateway.url("/v1/messages/count_tokens");
        let body = json!({"model": model, "system": "Be brief.",
            "messages": [{"role": "user", "content": "Hello there, how are you today?"}]});
        async move {
            let response = client
                .post(url)
                .header("x-api-key", KEY)
                .header("anthropic-version", "2023-06-01")
                .json(&body)
                .send()
                .await
                .expect("edge");
            assert_eq!(response.status(), 200);
            let counted: Value = response.json().await.expect("JSON");
            counted["input_tokens"].as_u64().expect("input_tokens")
        }
    };
    // The Anthropic deployment counts: the mock's count (its Messages usage).
    let mut asked = hello("mock");
    asked["system"] = json!("Be brief.");
    asked["messages"][0]["content"] = json!("Hello there, how are you today?");
    let direct = mock_messages(&gateway.client, gateway.mock, &asked).await;
    assert_eq!(count("claude").await, direct["usage"]["input_tokens"]);
    // The OpenAI-compatible one is estimated with a tokenizer.
    let estimated = count("mock").await;
    assert!((5..40).contains(&estimated), "{estimated}");

    let list: Value = gateway
        .client
        .get(gateway.url("/v1/models"))
        .header("x-api-key", KEY)
        .header("anthropic-version", "2023-06-01")
        .send()
        .await
        .expect("edge")
        .json()
        .await
        .expect("JSON");
    let ids: Vec<&str> = list["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|model| {
            assert_eq!(model["type"], "model");
            model["id"].as_str().expect("id")
        })
        .collect();
    assert!(ids.contains(&"claude") && ids.contains(&"mock"), "{ids:?}");
    assert_eq!(list["has_more"], false);
    assert_eq!(list["first_id"], ids[0]);

    let one: Value = gateway
        .client
        .get(gateway.url("/v1/models/claude"))
        .header("x-api-key", KEY)
        .header("anthropic-version", "2023-06-01")
        .send()
        .await
        .expect("edge")
        .json()
        .await
        .expect("JSON");
    assert_eq!(one["id"], "claude");
    assert_eq!(one["type"], "model");
    let openai: Value = gateway
        .client
        .get(gateway.url("/v1/models/claude"))
        .bearer_auth(KEY)
        .send()
        .await
        .expect("edge")
        .json()
        .await
        .expect("JSON");
    assert_eq!(openai["object"], "model");
    let missing = gateway
        .client
        .get(gateway.url("/v1/models/nope"))
        .bearer_auth(KEY)
        .send()
        .await
        .expect("edge");
    assert_eq!(missing.status(), 404);
}

/// Blocks a term in prompts and another in answers, for every tenant.
fn with_policies(config: &mut GatewayConfig) {
    protocol_models(config);
    config.policy = serde_json::from_value(json!({
        "default": "both",
        "policies": {"both": {"rules": [
            {"id": "no-secrets-in", "kind": "words", "terms": ["forbidden-term"], "direction": "input", "action": "block"},
            {"id": "no-leaks-out", "kind": "words", "terms": ["敏感词"], "direction": "output", "action": "block"}
        ]}}
    }))
    .expect("a valid policy source");
}

#[tokio::test]
async fn the_content_policy_reads_messages_both_ways() {
    let gateway = Gateway::start_with(with_policies).await;
    // A prompt term, even inside a tool result: refused before anything
    // leaves, in Anthropic's shape.
    let before = gateway.mock_stats().await["requests_total"].clone();
    let prompt = json!({"model": "claude", "max_tokens": 64, "messages": [
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1",
            "content": [{"type": "text", "text": "the forbidden-term is here"}]}]}]});
    let (status, kind, message) = anthropic_error(messages(&gateway, &prompt).await).await;
    assert_eq!((status, kind.as_str()), (400, "invalid_request_error"));
    assert!(message.contains("no-secrets-in") && !message.contains("forbidden-term"));
    assert_eq!(gateway.mock_stats().await["requests_total"], before);

    // An answer term from an Anthropic deployment: the answer goes through
    // the policy (in OpenAI's form) and is cut before the term, ending as a
    // Messages stream ends, with `refusal`.
    let pieces = json!({"content": ["Hello ", "there ", "敏感", "词", " after"]});
    let mut body = hello("claude");
    body["mock"] = pieces.clone();
    body["stream"] = json!(true);
    let response = messages(&gateway, &body).await;
    assert_eq!(response.status(), 200);
    let events = events(&response.text().await.expect("body"));
    assert_eq!(deltas(&events, "text_delta", "text"), "Hello there ");
    let (_, end) = &events[events.len() - 2];
    assert_eq!(end["delta"]["stop_reason"], "refusal");
    assert_eq!(names(&events).last(), Some(&"message_stop"));

    body["stream"] = json!(false);
    let answer: Value = messages(&gateway, &body).await.json().await.expect("JSON");
    assert_eq!(text_of(&answer), "Hello there ");
    assert_eq!(answer["stop_reason"], "refusal");
}
