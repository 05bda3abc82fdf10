//! `POST /v1/embeddings` end to end: the mock's vectors pass through
//! untouched in both encodings, usage is the mock's, and an alias serves
//! only the APIs it declares.

use serde_json::{Value, json};

use crate::harness::{Gateway, KEY, error_of};
use crate::messages::gateway;

async fn embeddings(gateway: &Gateway, body: &Value) -> reqwest::Response {
    gateway
        .client
        .post(gateway.url("/v1/embeddings"))
        .bearer_auth(KEY)
        .json(body)
        .send()
        .await
        .expect("edge reachable")
}

#[tokio::test]
async fn vectors_pass_through_as_floats_and_base64() {
    let gateway = gateway().await;
    let inputs = ["The quick brown fox", "jumps over the lazy dog"];
    let response = embeddings(&gateway, &json!({"model": "embed", "input": inputs})).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("x-request-id"));
    let answer: Value = response.json().await.expect("JSON");
    assert_eq!(answer["object"], "list");
    for (index, input) in inputs.iter().enumerate() {
        let vector: Vec<f32> = answer["data"][index]["embedding"]
            .as_array()
            .expect("floats")
            .iter()
            .map(|v| v.as_f64().expect("number") as f32)
            .collect();
        assert_eq!(
            vector,
            llmgw_mock_upstream::embeddings::text_vector(input, 16)
        );
    }
    // ceil(19 / 4) + ceil(23 / 4): the mock's count, reported as it is.
    assert_eq!(
        answer["usage"],
        json!({"prompt_tokens": 11, "total_tokens": 11})
    );
    let seen = gateway.mock_stats().await["last_request"]["body"].clone();
    assert_eq!(seen["model"], "text-embedding-mock");

    let body = json!({"model": "embed", "input": inputs[0], "encoding_format": "base64",
        "dimensions": 8});
    let answer: Value = embeddings(&gateway, &body)
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(
        answer["data"][0]["embedding"],
        llmgw_mock_upstream::embeddings::encode_base64(
            &llmgw_mock_upstream::embeddings::text_vector(inputs[0], 8)
        )
    );
    let tokens: Value = embeddings(
        &gateway,
        &json!({"model": "embed", "input": [[1, 2, 3], [4]]}),
    )
    .await
    .json()
    .await
    .expect("JSON");
    assert_eq!(tokens["usage"]["prompt_tokens"], 4);
}

#[tokio::test]
async fn an_alias_serves_only_its_apis() {
    let gateway = gateway().await;
    // `mock` serves chat and messages (the default), not embeddings.
    let (status, error) =
        error_of(embeddings(&gateway, &json!({"model": "mock", "input": "x"})).await).await;
    assert_eq!(status, 400);
    assert_eq!(error["param"], "model");
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("does not serve embeddings")),
        "{error}"
    );
    // `embed` serves embeddings only.
    let (status, error) = error_of(
        gateway
            .chat(json!({"model": "embed", "messages": [{"role": "user", "content": "hi"}]}))
            .await,
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("does not serve chat completions")),
        "{error}"
    );
    let (status, error) =
        error_of(embeddings(&gateway, &json!({"model": "embed", "input": []})).await).await;
    assert_eq!((status, error["param"].as_str()), (400, Some("input")));
    let (status, _) =
        error_of(embeddings(&gateway, &json!({"model": "nope", "input": "x"})).await).await;
    assert_eq!(status, 404);
}
