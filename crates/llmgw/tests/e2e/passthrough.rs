//! What reaches the upstream: unknown fields untouched, the alias replaced,
//! usage always requested, the gateway's credentials instead of the client's.

use serde_json::{Value, json};

use crate::harness::{Gateway, KEY, request};

async fn last_upstream_request(gateway: &Gateway) -> Value {
    gateway.mock_stats().await["last_request"].clone()
}

#[tokio::test]
async fn unknown_fields_reach_the_upstream_untouched() {
    let gateway = Gateway::start().await;
    let mut body = request("mock");
    body["some_future_openai_parameter"] = json!({"nested": [1, 2.5, "x", null]});
    body["seed"] = json!(42);
    body["response_format"] = json!({"type": "json_object"});
    assert_eq!(gateway.chat(body.clone()).await.status(), 200);
    let seen = last_upstream_request(&gateway).await;
    assert_eq!(
        seen["body"]["some_future_openai_parameter"],
        body["some_future_openai_parameter"]
    );
    assert_eq!(seen["body"]["seed"], 42);
    assert_eq!(seen["body"]["response_format"], body["response_format"]);
    assert_eq!(seen["body"]["messages"], body["messages"]);
    // The alias becomes the deployment's upstream model name.
    assert_eq!(seen["body"]["model"], "mock-upstream-model");
}

#[tokio::test]
async fn streaming_calls_always_ask_the_upstream_for_usage() {
    let gateway = Gateway::start().await;
    let mut body = request("mock");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": false, "future_option": 1});
    let (status, _) = gateway.stream(body).await;
    assert_eq!(status, 200);
    let seen = last_upstream_request(&gateway).await;
    assert_eq!(
        seen["body"]["stream_options"],
        json!({"include_usage": true, "future_option": 1})
    );
}

#[tokio::test]
async fn client_credentials_never_reach_the_upstream() {
    // Edition 2024 makes `set_var` unsafe (and the workspace forbids unsafe
    // code), so the test borrows a variable the environment already has.
    let (var, value) = std::env::vars()
        .find(|(_, value)| {
            value.len() >= 3
                && value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"/-_.".contains(&b))
        })
        .expect("some header-safe environment variable");
    let gateway = Gateway::start_with(|config| {
        config.router.models[0].api_key_env = Some(var.clone());
    })
    .await;
    assert_eq!(gateway.chat(request("mock")).await.status(), 200);
    let headers = &last_upstream_request(&gateway).await["headers"];
    assert_eq!(headers["authorization"], format!("Bearer {value}"));
    assert!(
        !headers.to_string().contains(KEY),
        "the client's key leaked upstream: {headers}"
    );

    // A deployment without a key sends no Authorization at all.
    assert_eq!(gateway.chat(request("reasoner")).await.status(), 200);
    let headers = &last_upstream_request(&gateway).await["headers"];
    assert!(headers.get("authorization").is_none(), "{headers}");
}

#[tokio::test]
async fn a_sane_client_request_id_is_echoed_but_never_reused() {
    let gateway = Gateway::start().await;
    let response = gateway
        .client
        .post(gateway.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .header("x-request-id", "client-trace-123")
        .json(&request("mock"))
        .send()
        .await
        .expect("reachable");
    // Echoed for correlation; the gateway's own id names the ledger rows,
    // so a client reusing an id cannot merge two requests' usage.
    assert_eq!(
        response.headers()["x-client-request-id"],
        "client-trace-123"
    );
    let first = response.headers()["x-request-id"].clone();
    assert_ne!(first, "client-trace-123");
    let again = gateway
        .client
        .post(gateway.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .header("x-request-id", "client-trace-123")
        .json(&request("mock"))
        .send()
        .await
        .expect("reachable");
    assert_ne!(again.headers()["x-request-id"], first);
    let response = gateway
        .client
        .post(gateway.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .header("x-request-id", "bad id with spaces")
        .json(&request("mock"))
        .send()
        .await
        .expect("reachable");
    assert!(!response.headers().contains_key("x-client-request-id"));
}
