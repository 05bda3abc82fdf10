//! Caps on a request's shape: JSON nesting, messages, content parts. Each
//! is refused with 400 in the caller's protocol, naming the field, and the
//! gateway keeps serving.

use serde_json::{Value, json};

use crate::harness::{Gateway, KEY, error_of, request};

/// Bodies here outgrow the harness's 64 KiB limit on purpose.
async fn gateway() -> Gateway {
    Gateway::start_with(|config| config.edge.max_body_bytes = 4 << 20).await
}

fn deep_array(depth: usize) -> String {
    "[".repeat(depth) + &"]".repeat(depth)
}

#[tokio::test]
async fn a_100k_deep_json_array_gets_400_and_the_gateway_keeps_serving() {
    let gateway = gateway().await;
    let body = format!(
        r#"{{"model":"mock","messages":[{{"role":"user","content":"hi"}}],"x":{}}}"#,
        deep_array(100_000)
    );
    let (status, error) = error_of(gateway.chat_raw(Some(KEY), body).await).await;
    assert_eq!(status, 400);
    assert_eq!(error["type"], "invalid_request_error");
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("nested too deeply")),
        "{error}"
    );
    // A bare deep array (no object at all) too.
    let (status, _) = error_of(gateway.chat_raw(Some(KEY), deep_array(100_000)).await).await;
    assert_eq!(status, 400);
    assert_eq!(gateway.chat(request("mock")).await.status(), 200);
}

#[tokio::test]
async fn deep_json_gets_400_on_embeddings_and_in_anthropic_shape_on_messages() {
    let gateway = gateway().await;
    let embeddings = gateway
        .client
        .post(gateway.url("/v1/embeddings"))
        .bearer_auth(KEY)
        .header("content-type", "application/json")
        .body(format!(
            r#"{{"model":"mock","input":{}}}"#,
            deep_array(100_000)
        ))
        .send()
        .await
        .expect("answer");
    let (status, _) = error_of(embeddings).await;
    assert_eq!(status, 400);

    let messages = gateway
        .client
        .post(gateway.url("/v1/messages"))
        .header("x-api-key", KEY)
        .header("anthropic-version", "2023-06-01")
        .header("content-type", "application/json")
        .body(format!(
            r#"{{"model":"mock","max_tokens":5,"messages":{}}}"#,
            deep_array(100_000)
        ))
        .send()
        .await
        .expect("answer");
    assert_eq!(messages.status(), 400);
    let body: Value = messages.json().await.expect("JSON");
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "invalid_request_error");
}

#[tokio::test]
async fn three_thousand_messages_get_400_naming_messages() {
    let gateway = gateway().await;
    let message = json!({"role": "user", "content": "hi"});
    let body = json!({"model": "mock", "messages": vec![message; 3000]});
    let (status, error) = error_of(gateway.chat(body).await).await;
    assert_eq!(status, 400);
    assert_eq!(error["param"], "messages");
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("2048")),
        "{error}"
    );
}

#[tokio::test]
async fn too_many_content_parts_get_400_naming_the_message() {
    let gateway = gateway().await;
    let part = json!({"type": "text", "text": "a"});
    let body = json!({"model": "mock", "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": vec![part; 300]},
    ]});
    let (status, error) = error_of(gateway.chat(body).await).await;
    assert_eq!(status, 400);
    assert_eq!(error["param"], "messages[1].content");

    // The Messages API: the same cap, Anthropic's shape.
    let block = json!({"type": "text", "text": "a"});
    let response = gateway
        .client
        .post(gateway.url("/v1/messages"))
        .header("x-api-key", KEY)
        .header("anthropic-version", "2023-06-01")
        .json(&json!({"model": "mock", "max_tokens": 5, "messages": [
            {"role": "user", "content": vec![block; 300]},
        ]}))
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("messages[0].content")),
        "{body}"
    );
}

#[tokio::test]
async fn the_caps_are_configurable() {
    let gateway = Gateway::start_with(|config| {
        config.edge.max_messages = 2;
        config.edge.max_json_depth = 3;
    })
    .await;
    let message = json!({"role": "user", "content": "hi"});
    let (status, error) = error_of(
        gateway
            .chat(json!({"model": "mock", "messages": vec![message.clone(); 3]}))
            .await,
    )
    .await;
    assert_eq!((status, error["param"].as_str()), (400, Some("messages")));
    // Depth 3: the body object, `messages`, one message object.
    assert_eq!(gateway.chat(request("mock")).await.status(), 200);
    let (status, _) = error_of(
        gateway
            .chat(json!({"model": "mock", "messages": [message], "x": [[[1]]]}))
            .await,
    )
    .await;
    assert_eq!(status, 400);
}
