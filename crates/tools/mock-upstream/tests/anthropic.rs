//! Black-box tests of `POST /v1/messages`, Anthropic's wire format.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use llmgw_mock_upstream::Config;
use serde_json::{Value, json};

mod support;
use support::{Server, hello_text};

fn messages(server: &Server, body: &Value) -> reqwest::RequestBuilder {
    server
        .client
        .post(format!("{}/v1/messages", server.base))
        .header("anthropic-version", "2023-06-01")
        .json(body)
}

/// The Anthropic twin of `support::hello`: same prompt, so the same answer.
fn hello(extra: Value) -> Value {
    let mut body = json!({
        "model": "mock",
        "max_tokens": 1024,
        "system": "Be brief.",
        "messages": [{"role": "user", "content": "Hello!"}]
    });
    if let (Some(body), Value::Object(extra)) = (body.as_object_mut(), extra) {
        body.extend(extra);
    }
    body
}

/// Splits an SSE body into `(event name, data)` pairs.
fn events(body: &str) -> Vec<(String, Value)> {
    body.split("\n\n")
        .filter(|event| !event.is_empty())
        .map(|event| {
            let (name, data) = event.split_once('\n').expect("two lines");
            let name = name.strip_prefix("event: ").expect("event line");
            let data = data.strip_prefix("data: ").expect("data line");
            (
                name.to_owned(),
                serde_json::from_str(data).expect("data json"),
            )
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

async fn stream_events(server: &Server, body: Value) -> Vec<(String, Value)> {
    let response = messages(server, &body).send().await.expect("send");
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().expect("ascii");
    assert!(content_type.starts_with("text/event-stream"));
    events(&response.text().await.expect("body"))
}

#[tokio::test]
async fn non_streaming_shape_usage_and_stats() {
    let server = Server::start(Config::default()).await;
    let response = messages(&server, &hello(json!({}))).send().await;
    let response = response.expect("send");
    assert_eq!(response.status(), 200);
    let mut body: Value = response.json().await.expect("json");
    let id = body["id"].take();
    assert!(id.as_str().expect("id").starts_with("msg_mock_"));
    // "Be brief." + "Hello!" = 15 chars -> ceil(15 / 4) = 4, as on the OpenAI route.
    assert_eq!(
        body,
        json!({"id": null, "type": "message", "role": "assistant", "model": "mock",
            "content": [{"type": "text", "text": hello_text(8)}],
            "stop_reason": "end_turn", "stop_sequence": null,
            "usage": {"input_tokens": 4, "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0, "output_tokens": 8}})
    );
    let stats = server.stats().await;
    assert_eq!(stats["requests_total"], 1);
    assert_eq!(stats["active_responses"], 0);
    assert_eq!(stats["last_request"]["body"], hello(json!({})));
    assert_eq!(
        stats["last_request"]["headers"]["anthropic-version"],
        "2023-06-01"
    );
}

#[tokio::test]
async fn same_answer_as_the_openai_route() {
    let server = Server::start(Config::default()).await;
    let prompt = "Tell me about the sea, in a few words.";
    let openai: Value = server
        .chat(json!({"model": "mock", "messages": [{"role": "user", "content": prompt}]}))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let anthropic: Value = messages(
        &server,
        &json!({"model": "mock", "max_tokens": 100,
            "messages": [{"role": "user", "content": [{"type": "text", "text": prompt}]}]}),
    )
    .send()
    .await
    .expect("send")
    .json()
    .await
    .expect("json");
    assert_eq!(
        anthropic["content"][0]["text"],
        openai["choices"][0]["message"]["content"]
    );
    assert_eq!(
        anthropic["usage"]["input_tokens"],
        openai["usage"]["prompt_tokens"]
    );
    assert_eq!(
        anthropic["usage"]["output_tokens"],
        openai["usage"]["completion_tokens"]
    );
}

#[tokio::test]
async fn streaming_event_sequence() {
    let server = Server::start(Config::default()).await;
    let events = stream_events(
        &server,
        hello(json!({"stream": true, "mock": {"chunks": 3}})),
    )
    .await;
    assert_eq!(
        names(&events),
        [
            "message_start",
            "ping",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    for (name, data) in &events {
        assert_eq!(&data["type"], name);
    }
    let message = &events[0].1["message"];
    assert!(message["id"].as_str().expect("id").starts_with("msg_mock_"));
    assert_eq!(message["content"], json!([]));
    assert_eq!(message["usage"]["input_tokens"], 4);
    assert_eq!(
        events[2].1,
        json!({"type": "content_block_start", "index": 0,
            "content_block": {"type": "text", "text": ""}})
    );
    assert_eq!(deltas(&events, "text_delta", "text"), hello_text(3));
    assert_eq!(
        events[7].1,
        json!({"type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": null},
            "usage": {"output_tokens": 3}})
    );
    server.wait_stat("active_responses", 0).await;
}

#[tokio::test]
async fn max_tokens_stops_with_max_tokens() {
    let server = Server::start(Config::default()).await;
    let body: Value = messages(&server, &hello(json!({"max_tokens": 2})))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(body["stop_reason"], "max_tokens");
    assert_eq!(body["content"][0]["text"], hello_text(2));
    assert_eq!(body["usage"]["output_tokens"], 2);

    let events = stream_events(&server, hello(json!({"max_tokens": 2, "stream": true}))).await;
    let (_, last_delta) = &events[events.len() - 2];
    assert_eq!(last_delta["delta"]["stop_reason"], "max_tokens");
    assert_eq!(last_delta["usage"]["output_tokens"], 2);
}

#[tokio::test]
async fn weather_calls_a_tool_and_its_result_gets_text() {
    let server = Server::start(Config::default()).await;
    let tools = json!([{"name": "get_weather", "description": "Weather in a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]);
    let ask = json!({"model": "mock", "max_tokens": 100, "tools": tools,
        "messages": [{"role": "user", "content": "What is the weather in Paris?"}]});
    let body: Value = messages(&server, &ask)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(body["stop_reason"], "tool_use");
    let tool_use = json!({"type": "tool_use", "id": "toolu_mock_1", "name": "get_weather",
        "input": {"city": "Paris"}});
    assert_eq!(body["content"], json!([tool_use]));

    let mut streamed = ask.clone();
    streamed["stream"] = json!(true);
    let events = stream_events(&server, streamed).await;
    assert_eq!(
        events[2].1["content_block"],
        json!({"type": "tool_use", "id": "toolu_mock_1", "name": "get_weather", "input": {}})
    );
    let input = deltas(&events, "input_json_delta", "partial_json");
    assert_eq!(
        serde_json::from_str::<Value>(&input).expect("json"),
        json!({"city": "Paris"})
    );
    let (_, message_delta) = &events[events.len() - 2];
    assert_eq!(message_delta["delta"]["stop_reason"], "tool_use");

    // The round trip ends: a tool result is answered with text.
    let mut answered = ask;
    answered["messages"] = json!([
        {"role": "user", "content": "What is the weather in Paris?"},
        {"role": "assistant", "content": [tool_use]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_mock_1",
            "content": "18 degrees, sunny"}]}
    ]);
    let body: Value = messages(&server, &answered)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(body["stop_reason"], "end_turn");
    assert_eq!(body["content"][0]["type"], "text");
}

#[tokio::test]
async fn reasoner_thinks_first() {
    let server = Server::start(Config::default()).await;
    let body: Value = messages(
        &server,
        &hello(json!({"model": "mock-reasoner", "mock": {"chunks": 2}})),
    )
    .send()
    .await
    .expect("send")
    .json()
    .await
    .expect("json");
    assert_eq!(body["content"][0]["type"], "thinking");
    assert_eq!(body["content"][0]["thinking"], "thinking thinking ");
    assert_eq!(body["content"][1]["text"], hello_text(2));
    assert_eq!(body["usage"]["output_tokens"], 4);

    let events = stream_events(
        &server,
        hello(json!({"model": "mock-reasoner", "mock": {"chunks": 2}, "stream": true})),
    )
    .await;
    assert_eq!(
        deltas(&events, "thinking_delta", "thinking"),
        "thinking thinking "
    );
    assert!(!deltas(&events, "signature_delta", "signature").is_empty());
    assert_eq!(deltas(&events, "text_delta", "text"), hello_text(2));
}

#[tokio::test]
async fn rejects_what_anthropic_rejects() {
    let server = Server::start(Config::default()).await;
    let cases = [
        (json!({"max_tokens": null}), "max_tokens"),
        (json!({"max_tokens": 0}), "max_tokens"),
        (
            json!({"stream_options": {"include_usage": true}}),
            "stream_options: Extra inputs are not permitted",
        ),
        (
            json!({"messages": [{"role": "system", "content": "x"}]}),
            "Unexpected role \"system\"",
        ),
        (json!({"messages": []}), "at least one message"),
        (json!({"mock": {"fault": "nope"}}), "mock.fault"),
    ];
    for (extra, expected) in cases {
        let mut body = hello(extra);
        if body["max_tokens"].is_null() {
            body.as_object_mut().expect("object").remove("max_tokens");
        }
        let response = messages(&server, &body).send().await.expect("send");
        assert_eq!(response.status(), 400, "{body}");
        let error: Value = response.json().await.expect("json");
        assert_eq!(error["type"], "error");
        assert_eq!(error["error"]["type"], "invalid_request_error");
        let message = error["error"]["message"].as_str().expect("message");
        assert!(message.contains(expected), "{message}");
    }
    let response = server
        .client
        .post(format!("{}/v1/messages", server.base))
        .json(&hello(json!({})))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 400, "anthropic-version is required");
    assert_eq!(server.stats().await["requests_total"], 7);
}

#[tokio::test]
async fn api_key_goes_in_x_api_key() {
    let server = Server::start(Config {
        api_key: Some("sk-ant-test".to_owned()),
        ..Config::default()
    })
    .await;
    let body = hello(json!({}));
    let missing = messages(&server, &body)
        .bearer_auth("sk-ant-test")
        .send()
        .await;
    let missing = missing.expect("send");
    assert_eq!(missing.status(), 401);
    let error: Value = missing.json().await.expect("json");
    assert_eq!(error["error"]["type"], "authentication_error");
    let wrong = messages(&server, &body).header("x-api-key", "nope").send();
    assert_eq!(wrong.await.expect("send").status(), 401);
    let right = messages(&server, &body)
        .header("x-api-key", "sk-ant-test")
        .send();
    assert_eq!(right.await.expect("send").status(), 200);
}

#[tokio::test]
async fn status_faults() {
    let server = Server::start(Config::default()).await;
    let cases = [
        (
            json!({"mock": {"fault": "429"}}),
            None,
            429,
            "rate_limit_error",
        ),
        (json!({"model": "mock-fault-500"}), None, 500, "api_error"),
        (json!({"stream": true}), Some("503"), 503, "api_error"),
        (
            json!({"model": "mock-fault-529"}),
            None,
            529,
            "overloaded_error",
        ),
        (
            json!({"stream": true}),
            Some("529"),
            529,
            "overloaded_error",
        ),
        // The body's fault wins over the model name's, as on the OpenAI route.
        (
            json!({"model": "mock-fault-500", "mock": {"fault": "529"}}),
            None,
            529,
            "overloaded_error",
        ),
    ];
    for (extra, header, status, kind) in cases {
        let mut request = messages(&server, &hello(extra));
        if let Some(fault) = header {
            request = request.header("x-mock-fault", fault);
        }
        let response = request.send().await.expect("send");
        assert_eq!(response.status(), status);
        if status == 429 {
            assert_eq!(response.headers()["retry-after"], "1");
        }
        let body: Value = response.json().await.expect("json");
        assert_eq!(body["type"], "error");
        assert_eq!(body["error"]["type"], kind);
    }
}

#[tokio::test]
async fn body_faults() {
    let server = Server::start(Config::default()).await;
    let response = messages(&server, &hello(json!({"mock": {"fault": "invalid-json"}})));
    let text = response.send().await.expect("send").text().await;
    assert_eq!(text.expect("body"), r#"{"id": broken"#);

    let body = hello(json!({"stream": true, "mock": {"fault": "invalid-json"}}));
    let response = messages(&server, &body).send().await.expect("send");
    assert_eq!(
        response.text().await.expect("body"),
        "event: message_start\ndata: {\"id\": broken\n\n"
    );

    let response = messages(&server, &hello(json!({"mock": {"fault": "truncate"}})));
    let text = response.send().await.expect("send").text().await;
    let text = text.expect("body");
    assert!(text.starts_with("{\""));
    assert!(serde_json::from_str::<Value>(&text).is_err());

    // Streaming: half the words, then the connection is cut.
    let body = hello(json!({"stream": true, "mock": {"fault": "truncate", "chunks": 4}}));
    let response = messages(&server, &body).send().await.expect("send");
    let mut stream = response.bytes_stream();
    let mut received = Vec::new();
    let mut failed = false;
    while let Some(item) = stream.next().await {
        match item {
            Ok(bytes) => received.extend_from_slice(&bytes),
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    assert!(failed, "a truncated stream must end in an error");
    let events = events(&String::from_utf8(received).expect("utf-8"));
    assert_eq!(deltas(&events, "text_delta", "text"), hello_text(2));
    assert!(!names(&events).contains(&"message_stop"));
}

#[tokio::test]
async fn stalls() {
    let server = Server::start(Config::default()).await;
    let stalled = messages(
        &server,
        &hello(json!({"model": "mock-fault-stall-first-byte"})),
    )
    .timeout(Duration::from_millis(300))
    .send()
    .await;
    assert!(stalled.expect_err("no headers").is_timeout());

    let body = hello(json!({"stream": true, "mock": {"fault": "stall-mid-stream", "chunks": 4}}));
    let response = messages(&server, &body)
        .send()
        .await
        .expect("headers arrive");
    let mut stream = response.bytes_stream();
    let mut text = String::new();
    // What comes before the stall (a generous deadline, however slow the
    // machine), then nothing more within a while: a busy machine can only
    // make this pass more easily, never fail it.
    tokio::time::timeout(Duration::from_secs(30), async {
        while deltas(&events(&text), "text_delta", "text") != hello_text(2) {
            match stream.next().await {
                Some(bytes) => {
                    text.push_str(std::str::from_utf8(&bytes.expect("bytes")).expect("utf-8"))
                }
                None => panic!("stream ended instead of stalling"),
            }
        }
    })
    .await
    .expect("the events before the stall");
    let after = tokio::time::timeout(Duration::from_millis(300), stream.next()).await;
    assert!(after.is_err(), "the stream went on: {after:?}");
    assert_eq!(deltas(&events(&text), "text_delta", "text"), hello_text(2));
    drop(stream);
    server.wait_stat("active_responses", 0).await;
}

#[tokio::test]
async fn deltas_are_paced() {
    let server = Server::start(Config {
        chunk_delay_ms: 1_000,
        ..Config::default()
    })
    .await;
    let body = hello(json!({"stream": true, "mock": {"chunks": 2}}));
    let response = messages(&server, &body).send().await.expect("send");
    let mut stream = response.bytes_stream();
    let mut buffer = String::new();
    let mut arrivals = Vec::new();
    while let Some(bytes) = stream.next().await {
        buffer.push_str(std::str::from_utf8(&bytes.expect("bytes")).expect("utf-8"));
        while let Some(end) = buffer.find("\n\n") {
            arrivals.push((buffer[..end].to_owned(), Instant::now()));
            buffer.drain(..end + 2);
        }
        if arrivals.len() >= 5 {
            break;
        }
    }
    // message_start, ping, content_block_start, then the two words.
    assert!(arrivals[3].0.starts_with("event: content_block_delta"));
    // The pause is a lower bound (a busy machine only stretches it); the
    // start events are not paced: they come closer together than the
    // paced deltas (compared with each other, not with a fixed figure).
    let paced = arrivals[4].1 - arrivals[3].1;
    assert!(
        paced >= Duration::from_millis(500),
        "deltas {paced:?} apart"
    );
    let start = arrivals[2].1 - arrivals[0].1;
    assert!(
        start < paced,
        "start events {start:?} apart, deltas {paced:?}"
    );
}
