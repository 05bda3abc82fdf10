use llmgw_proto::ErrorCode;
use serde_json::{Value, json};

use super::*;

fn translated(client: Value, stream: bool) -> Value {
    let body = serde_json::to_vec(&client).expect("encode");
    let request = translate(&body, "claude-sonnet-4-5", stream).expect("translates");
    serde_json::from_slice(&request.body).expect("json")
}

fn rejected(client: Value) -> ProviderError {
    let body = serde_json::to_vec(&client).expect("encode");
    match translate(&body, "m", false) {
        Ok(request) => panic!("accepted: {}", String::from_utf8_lossy(&request.body)),
        Err(error) => error,
    }
}

#[test]
fn system_merging_and_defaults() {
    let body = translated(
        json!({
            "model": "claude", "seed": 7, "n": 1, "stream_options": {"include_usage": true},
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "developer", "content": [{"type": "text", "text": "Use French."}]},
                {"role": "user", "content": "Hello!"},
                {"role": "user", "content": [{"type": "text", "text": "Anyone?"}]},
                {"role": "assistant", "content": ""},
                {"role": "assistant", "content": "Bonjour."},
                {"role": "user", "content": "Ça va ?"}
            ],
            "stop": "END", "temperature": 1.6, "top_p": 0.9, "user": "tenant-42"
        }),
        true,
    );
    assert_eq!(
        body,
        json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 4096,
            "system": "Be brief.\n\nUse French.",
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "Hello!"},
                    {"type": "text", "text": "Anyone?"}
                ]},
                {"role": "assistant", "content": "Bonjour."},
                {"role": "user", "content": "Ça va ?"}
            ],
            "stop_sequences": ["END"],
            "temperature": 1.0,
            "top_p": 0.9,
            "stream": true,
            "metadata": {"user_id": "tenant-42"}
        })
    );
    // 9 + 11 + 6 + 7 + 8 + 7 characters of text.
}

#[test]
fn max_tokens_and_stop_list() {
    let body = translated(
        json!({"messages": [{"role": "user", "content": "x"}], "max_tokens": 50,
            "max_completion_tokens": 20, "stop": ["a", "b"], "temperature": 0.3}),
        false,
    );
    assert_eq!(body["max_tokens"], 20);
    assert_eq!(body["stop_sequences"], json!(["a", "b"]));
    assert_eq!(body["temperature"], 0.3);
    assert!(body.get("stream").is_none());
    let body = translated(
        json!({"messages": [{"role": "user", "content": "x"}], "max_tokens": 50, "stop": null}),
        false,
    );
    assert_eq!(body["max_tokens"], 50);
    assert!(body.get("stop_sequences").is_none());
}

#[test]
fn images() {
    let body = translated(
        json!({"messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "high"}}
        ]}]}),
        false,
    );
    assert_eq!(
        body["messages"],
        json!([{"role": "user", "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
            {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}
        ]}])
    );

    let error = rejected(json!({"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}]}]}));
    assert_eq!(error.code, ErrorCode::InvalidRequest);
    assert_eq!(error.param.as_deref(), Some("messages[0].content"));
    let error = rejected(json!({"messages": [{"role": "user", "content": [
        {"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}]}]}));
    assert!(error.message.contains("input_audio"), "{}", error.message);
}

#[test]
fn tools_and_tool_choice() {
    let weather = json!({"type": "function", "function": {"name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        "strict": true}});
    let now = json!({"type": "function", "function": {"name": "now"}});
    let messages = json!([{"role": "user", "content": "weather?"}]);
    let body = translated(
        json!({"messages": messages, "tools": [weather, now], "tool_choice": "required",
            "parallel_tool_calls": false}),
        false,
    );
    assert_eq!(
        body["tools"],
        json!([
            {"name": "get_weather", "description": "Weather in a city", "input_schema":
                {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
            {"name": "now", "input_schema": {"type": "object", "properties": {}}}
        ])
    );
    assert_eq!(
        body["tool_choice"],
        json!({"type": "any", "disable_parallel_tool_use": true})
    );

    let choices = [
        (json!("auto"), json!({"type": "auto"})),
        (json!("none"), json!({"type": "none"})),
        (
            json!({"type": "function", "function": {"name": "now"}}),
            json!({"type": "tool", "name": "now"}),
        ),
    ];
    for (choice, expected) in choices {
        let body = translated(
            json!({"messages": messages, "tools": [now], "tool_choice": choice}),
            false,
        );
        assert_eq!(body["tool_choice"], expected);
    }
    // No tools: nothing to choose from, and Anthropic would reject it.
    let body = translated(json!({"messages": messages, "tool_choice": "auto"}), false);
    assert!(body.get("tool_choice").is_none() && body.get("tools").is_none());
    let error =
        rejected(json!({"messages": messages, "tools": [{"type": "custom", "custom": {}}]}));
    assert_eq!(error.param.as_deref(), Some("tools"));
}

#[test]
fn tool_calls_and_results() {
    let body = translated(
        json!({"messages": [
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "toolu_1", "type": "function",
                    "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}},
                {"id": "toolu_2", "type": "function",
                    "function": {"name": "get_weather", "arguments": "{\"city\":\"Rome\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "toolu_1", "content": "18°C"},
            {"role": "tool", "tool_call_id": "toolu_2", "content": [{"type": "text", "text": "21°C"}]},
            {"role": "user", "content": "Thanks. Which is warmer?"}
        ]}),
        false,
    );
    assert_eq!(
        body["messages"],
        json!([
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {"city": "Rome"}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18°C"},
                {"type": "tool_result", "tool_use_id": "toolu_2", "content": "21°C"},
                {"type": "text", "text": "Thanks. Which is warmer?"}
            ]}
        ])
    );

    // Tool results go first in their turn, even after an interjection.
    let body = translated(
        json!({"messages": [
            {"role": "assistant", "tool_calls": [{"id": "toolu_1", "type": "function",
                "function": {"name": "now", "arguments": ""}}]},
            {"role": "user", "content": "Hurry."},
            {"role": "tool", "tool_call_id": "toolu_1", "content": ""}
        ]}),
        false,
    );
    assert_eq!(
        body["messages"],
        json!([
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "toolu_1", "name": "now", "input": {}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1"},
                {"type": "text", "text": "Hurry."}
            ]}
        ])
    );

    let error = rejected(json!({"messages": [{"role": "assistant", "tool_calls": [
        {"id": "t", "type": "function", "function": {"name": "f", "arguments": "[1]"}}]}]}));
    assert_eq!(error.param.as_deref(), Some("messages[0].tool_calls"));
    let error = rejected(json!({"messages": [{"role": "tool", "content": "x"}]}));
    assert_eq!(error.param.as_deref(), Some("messages[0].tool_call_id"));
    let error = rejected(json!({"messages": [{"role": "function", "name": "f", "content": "x"}]}));
    assert_eq!(error.param.as_deref(), Some("messages[0].role"));
}

#[test]
fn exact_bytes_of_a_simple_request() {
    let client =
        br#"{"model":"alias","messages":[{"role":"user","content":"Hi"}],"max_tokens":10}"#;
    let request = translate(client, "claude-haiku-4-5", false).expect("translates");
    assert_eq!(
        String::from_utf8(request.body).expect("utf-8"),
        r#"{"model":"claude-haiku-4-5","max_tokens":10,"messages":[{"role":"user","content":"Hi"}]}"#
    );
    let error = translate(b"[1]", "m", false).err().expect("not an object");
    assert_eq!(error.code, ErrorCode::InvalidRequest);
}
