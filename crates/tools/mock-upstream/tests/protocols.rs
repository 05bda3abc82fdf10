//! Black-box tests of the mock's embeddings route, Anthropic's
//! count_tokens, tool calls on the OpenAI route and prompt-cache usage.

use llmgw_mock_upstream::Config;
use serde_json::{Value, json};

mod support;
use support::{Server, hello, parse, sse_data};

fn post(server: &Server, path: &str, body: &Value) -> reqwest::RequestBuilder {
    server
        .client
        .post(format!("{}{path}", server.base))
        .header("anthropic-version", "2023-06-01")
        .json(body)
}

#[tokio::test]
async fn embeddings_are_deterministic_in_both_encodings() {
    let server = Server::start(Config::default()).await;
    let body = json!({"model": "text-embedding-mock", "input": ["héllo", "héllo", "other text"]});
    let response = post(&server, "/v1/embeddings", &body)
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.expect("json");
    assert_eq!(answer["object"], "list");
    assert_eq!(answer["model"], "text-embedding-mock");
    let data = answer["data"].as_array().expect("data");
    assert_eq!(data.len(), 3);
    assert_eq!(data[0]["object"], "embedding");
    assert_eq!(data[2]["index"], 2);
    assert_eq!(data[0]["embedding"], data[1]["embedding"]);
    assert_ne!(data[0]["embedding"], data[2]["embedding"]);
    assert_eq!(data[0]["embedding"].as_array().expect("floats").len(), 16);
    // 5 chars -> 2 tokens each, 10 chars -> 3.
    assert_eq!(
        answer["usage"],
        json!({"prompt_tokens": 7, "total_tokens": 7})
    );

    let base64 =
        json!({"model": "e", "input": "héllo", "encoding_format": "base64", "dimensions": 4});
    let answer: Value = post(&server, "/v1/embeddings", &base64)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let encoded = answer["data"][0]["embedding"]
        .as_str()
        .expect("base64 text");
    // 4 float32s: 16 bytes, 24 base64 characters with padding.
    assert_eq!(encoded.len(), 24);
    let floats = json!({"model": "e", "input": "héllo", "dimensions": 4});
    let answer: Value = post(&server, "/v1/embeddings", &floats)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let vector: Vec<f32> = answer["data"][0]["embedding"]
        .as_array()
        .expect("floats")
        .iter()
        .map(|v| v.as_f64().expect("number") as f32)
        .collect();
    assert_eq!(
        encoded,
        llmgw_mock_upstream::embeddings::encode_base64(&vector)
    );

    let fault = json!({"model": "mock-fault-429", "input": "x"});
    let response = post(&server, "/v1/embeddings", &fault)
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 429);
    let bad = json!({"model": "e", "input": "x", "dimensions": 0});
    let response = post(&server, "/v1/embeddings", &bad)
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 400);
}

#[tokio::test]
async fn count_tokens_matches_the_messages_usage() {
    let server = Server::start(Config::default()).await;
    let request = json!({"model": "mock", "max_tokens": 16, "system": "Be brief.",
        "messages": [{"role": "user", "content": "Hello there, mock!"}]});
    let message: Value = post(&server, "/v1/messages", &request)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let mut count = request.clone();
    count.as_object_mut().map(|body| body.remove("max_tokens"));
    let counted: Value = post(&server, "/v1/messages/count_tokens", &count)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(counted["input_tokens"], message["usage"]["input_tokens"]);
    let response = post(&server, "/v1/messages/count_tokens", &json!({"model": "m"}))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 400);
}

#[tokio::test]
async fn the_openai_route_calls_tools_too() {
    let server = Server::start(Config::default()).await;
    let tools = json!([{"type": "function", "function": {"name": "get_weather",
        "parameters": {"type": "object"}}}]);
    let asked = json!({"model": "mock", "tools": tools,
        "messages": [{"role": "user", "content": "What's the weather in Paris?"}]});
    let completion: Value = server
        .chat(asked.clone())
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let choice = &completion["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(choice["message"]["content"], Value::Null);
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "get_weather");
    assert_eq!(
        serde_json::from_str::<Value>(call["function"]["arguments"].as_str().expect("string"))
            .expect("json"),
        json!({"city": "Paris"})
    );
    assert_eq!(completion["usage"]["completion_tokens"], 3);

    let mut streamed = asked.clone();
    streamed["stream"] = true.into();
    let body = server
        .chat(streamed)
        .send()
        .await
        .expect("send")
        .text()
        .await
        .expect("body");
    let chunks = parse(&sse_data(&body));
    let calls: Vec<&Value> = chunks
        .iter()
        .filter_map(|chunk| chunk["choices"][0]["delta"]["tool_calls"].get(0))
        .collect();
    assert_eq!(calls.len(), 3);
    assert_eq!(calls[0]["id"], "call_mock_1");
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    let arguments: String = calls
        .iter()
        .filter_map(|call| call["function"]["arguments"].as_str())
        .collect();
    assert_eq!(arguments, r#"{"city": "Paris"}"#);
    let finish: Vec<&Value> = chunks
        .iter()
        .map(|chunk| &chunk["choices"][0]["finish_reason"])
        .filter(|reason| !reason.is_null())
        .collect();
    assert_eq!(finish, [&json!("tool_calls")]);

    // After the tool's result, the model answers in text.
    let answered = json!({"model": "mock", "tools": tools, "messages": [
        {"role": "user", "content": "What's the weather in Paris?"},
        {"role": "assistant", "content": null, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_mock_1", "content": "18°C"}]});
    let completion: Value = server
        .chat(answered)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(completion["choices"][0]["finish_reason"], "stop");
}

#[tokio::test]
async fn cache_usage_on_both_routes() {
    let server = Server::start(Config::default()).await;
    let cache = json!({"cache_read_tokens": 100, "cache_write_tokens": 40});
    let completion: Value = server
        .chat(hello(json!({"mock": cache})))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let plain: Value = server
        .chat(hello(json!({})))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let base = plain["usage"]["prompt_tokens"].as_u64().expect("count");
    assert_eq!(completion["usage"]["prompt_tokens"], base + 100);
    assert_eq!(
        completion["usage"]["prompt_tokens_details"]["cached_tokens"],
        100
    );

    let request = json!({"model": "mock", "max_tokens": 16, "system": "Be brief.", "mock": cache,
        "messages": [{"role": "user", "content": "Hello!"}]});
    let message: Value = post(&server, "/v1/messages", &request)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(
        message["usage"],
        json!({"input_tokens": base, "cache_read_input_tokens": 100,
               "cache_creation_input_tokens": 40, "output_tokens": 8})
    );
}
