//! Every validation rule at the edge, with OpenAI's status, `type`, `code`
//! and `param`. None of these requests may reach the upstream.

use serde_json::{Value, json};

use crate::harness::{Gateway, KEY, error_of, request};

struct Case {
    name: &'static str,
    body: String,
    status: u16,
    code: Value,
    param: Value,
}

fn case(name: &'static str, body: Value, status: u16, code: Value, param: Value) -> Case {
    Case {
        name,
        body: body.to_string(),
        status,
        code,
        param,
    }
}

fn with(field: &str, value: Value) -> Value {
    let mut body = request("mock");
    body[field] = value;
    body
}

fn cases() -> Vec<Case> {
    let null = Value::Null;
    vec![
        Case {
            name: "invalid JSON",
            body: "{\"model\": \"mock\", \"messages\": [".to_owned(),
            status: 400,
            code: null.clone(),
            param: null.clone(),
        },
        Case {
            name: "not an object",
            body: "[1, 2]".to_owned(),
            status: 400,
            code: null.clone(),
            param: null.clone(),
        },
        case(
            "wrong type for temperature",
            with("temperature", json!("hot")),
            400,
            null.clone(),
            null.clone(),
        ),
        case(
            "wrong type for messages",
            with("messages", json!("hi")),
            400,
            null.clone(),
            null.clone(),
        ),
        case(
            "negative max_tokens",
            with("max_tokens", json!(-1)),
            400,
            null.clone(),
            null.clone(),
        ),
        case(
            "missing model",
            json!({"messages": [{"role": "user", "content": "x"}]}),
            400,
            null.clone(),
            json!("model"),
        ),
        case(
            "missing messages",
            json!({"model": "mock"}),
            400,
            null.clone(),
            json!("messages"),
        ),
        case(
            "empty messages",
            with("messages", json!([])),
            400,
            null.clone(),
            json!("messages"),
        ),
        case(
            "unknown role",
            with("messages", json!([{"role": "wizard", "content": "x"}])),
            400,
            null.clone(),
            json!("messages"),
        ),
        case(
            "missing role",
            with("messages", json!([{"content": "x"}])),
            400,
            null.clone(),
            json!("messages"),
        ),
        case(
            "temperature above 2",
            with("temperature", json!(2.5)),
            400,
            null.clone(),
            json!("temperature"),
        ),
        case(
            "temperature below 0",
            with("temperature", json!(-0.1)),
            400,
            null.clone(),
            json!("temperature"),
        ),
        case(
            "top_p above 1",
            with("top_p", json!(1.01)),
            400,
            null.clone(),
            json!("top_p"),
        ),
        case(
            "prompt over the model's character limit",
            with(
                "messages",
                json!([{"role": "user", "content": "x".repeat(1_001)}]),
            ),
            400,
            json!("context_length_exceeded"),
            json!("messages"),
        ),
        case(
            "max_tokens above the model's cap",
            with("max_tokens", json!(257)),
            400,
            null.clone(),
            json!("max_tokens"),
        ),
        case(
            "max_completion_tokens above the model's cap",
            with("max_completion_tokens", json!(10_000)),
            400,
            null.clone(),
            json!("max_completion_tokens"),
        ),
        case(
            "max_tokens zero",
            with("max_tokens", json!(0)),
            400,
            null.clone(),
            json!("max_tokens"),
        ),
        case(
            "unknown model",
            request("gpt-17"),
            404,
            json!("model_not_found"),
            json!("model"),
        ),
    ]
}

#[tokio::test]
async fn every_invalid_request_gets_openai_status_code_and_param() {
    let gateway = Gateway::start().await;
    for case in cases() {
        let response = gateway.chat_raw(Some(KEY), case.body).await;
        let (status, error) = error_of(response).await;
        assert_eq!(status, case.status, "{}: {error}", case.name);
        assert_eq!(error["type"], "invalid_request_error", "{}", case.name);
        assert_eq!(error["code"], case.code, "{}: {error}", case.name);
        assert_eq!(error["param"], case.param, "{}: {error}", case.name);
        assert!(
            !error["message"].as_str().expect("message").is_empty(),
            "{}",
            case.name
        );
    }
    let stats = gateway.mock_stats().await;
    assert_eq!(
        stats["requests_total"], 0,
        "invalid requests must not reach the upstream"
    );
}

#[tokio::test]
async fn boundary_values_are_accepted() {
    let gateway = Gateway::start().await;
    let mut body = request("mock");
    body["temperature"] = json!(2);
    body["top_p"] = json!(0);
    body["max_tokens"] = json!(256);
    body["messages"] = json!([{"role": "user", "content": "x".repeat(1_000)}]);
    assert_eq!(gateway.chat(body).await.status(), 200);
}

#[tokio::test]
async fn body_over_the_size_limit_is_413() {
    let gateway = Gateway::start().await;
    // 64 KiB is the test limit; this is 100 KB of valid JSON.
    let body = with(
        "messages",
        json!([{"role": "user", "content": "x".repeat(100_000)}]),
    );
    let (status, error) = error_of(gateway.chat(body).await).await;
    assert_eq!(status, 413);
    assert_eq!(error["code"], "request_too_large");

    // Without a Content-Length (chunked upload) the limit still holds.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..20).map(|_| Ok(vec![b' '; 8 * 1024])).collect();
    let streamed = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let (status, _) = error_of(gateway.chat_raw(Some(KEY), streamed).await).await;
    assert_eq!(status, 413);
}

#[tokio::test]
async fn missing_or_wrong_key_is_401_invalid_api_key() {
    let gateway = Gateway::start().await;
    let body = request("mock").to_string();
    for key in [None, Some("sk-llmgw-wrong-0000000000000000"), Some("")] {
        let (status, error) = error_of(gateway.chat_raw(key, body.clone()).await).await;
        assert_eq!(status, 401, "{key:?}");
        assert_eq!(error["code"], "invalid_api_key", "{key:?}");
    }
    let response = gateway
        .client
        .post(gateway.url("/v1/chat/completions"))
        .header("authorization", format!("Basic {KEY}"))
        .body(body)
        .send()
        .await
        .expect("reachable");
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn unknown_parameters_do_not_fail_validation() {
    let gateway = Gateway::start().await;
    let mut body = request("mock");
    body["some_future_openai_parameter"] = json!({"nested": [1, 2, 3]});
    body["messages"] = json!([
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Look"}, {"type": "image_url", "image_url": {"url": "data:,"}}]},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "42"},
        {"role": "developer", "content": "ok"}
    ]);
    assert_eq!(gateway.chat(body).await.status(), 200);
}
