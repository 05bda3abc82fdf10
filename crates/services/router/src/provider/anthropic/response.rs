//! A non-streaming Anthropic message -> an OpenAI `chat.completion`.

use std::borrow::Cow;

use bytes::Bytes;
use llmgw_openai::Usage;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::{
    ErrorView, ProviderError, UsageView, encode_error, finish_reason, invalid_json_error, now_secs,
};

/// What is read of a Messages response (or of a `content_block_start`).
#[derive(Debug, Deserialize)]
struct MessageView<'a> {
    #[serde(default, borrow)]
    id: Cow<'a, str>,
    #[serde(default, borrow)]
    content: Vec<BlockView<'a>>,
    #[serde(default, borrow)]
    stop_reason: Option<Cow<'a, str>>,
    #[serde(default)]
    usage: UsageView,
    /// Set when the body is an error (`"type": "error"`) despite the 200.
    #[serde(default, borrow)]
    error: Option<ErrorView<'a>>,
}

/// One content block. Only the fields of the types we translate are read:
/// `text`, `thinking` and `tool_use`; others (`redacted_thinking`,
/// server tool blocks) have no OpenAI equivalent and are skipped.
#[derive(Debug, Deserialize)]
pub(super) struct BlockView<'a> {
    #[serde(rename = "type", borrow)]
    pub(super) kind: Cow<'a, str>,
    #[serde(default, borrow)]
    pub(super) text: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub(super) thinking: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub(super) id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub(super) name: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub(super) input: Option<&'a RawValue>,
}

#[derive(Debug, Serialize)]
struct Completion<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [Choice<'a>; 1],
    usage: Usage,
}

#[derive(Debug, Serialize)]
struct Choice<'a> {
    index: u32,
    message: Message<'a>,
    finish_reason: &'static str,
}

#[derive(Debug, Serialize)]
struct Message<'a> {
    role: &'static str,
    /// `null` when the model only called tools, as OpenAI does.
    content: Option<String>,
    /// DeepSeek's field for reasoning, which OpenAI-compatible clients know.
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<ToolCall<'a>>,
}

#[derive(Debug, Serialize)]
struct ToolCall<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    function: Function<'a>,
}

#[derive(Debug, Serialize)]
struct Function<'a> {
    name: &'a str,
    /// OpenAI carries the arguments as a JSON string: the raw `input`.
    arguments: &'a str,
}

/// Translates a Messages response into a `chat.completion` reporting
/// `model` (Anthropic's answer names the upstream model; the caller picks
/// what the client sees). Anthropic's message id is kept as the id.
pub fn completion_to_openai(body: &[u8], model: &str) -> Result<Bytes, ProviderError> {
    completion_at(body, model, now_secs())
}

fn completion_at(body: &[u8], model: &str, created: u64) -> Result<Bytes, ProviderError> {
    let message: MessageView = serde_json::from_slice(body).map_err(invalid_json_error)?;
    if let Some(error) = message.error {
        return Err(error.into_provider_error());
    }
    let mut content: Option<String> = None;
    let mut reasoning: Option<String> = None;
    let mut tool_calls = Vec::new();
    for block in &message.content {
        match block.kind.as_ref() {
            "text" => content
                .get_or_insert_with(String::new)
                .push_str(block.text.as_deref().unwrap_or("")),
            "thinking" => reasoning
                .get_or_insert_with(String::new)
                .push_str(block.thinking.as_deref().unwrap_or("")),
            "tool_use" => tool_calls.push(ToolCall {
                id: block.id.as_deref().unwrap_or(""),
                kind: "function",
                function: Function {
                    name: block.name.as_deref().unwrap_or(""),
                    arguments: block.input.map_or("{}", RawValue::get),
                },
            }),
            _ => {}
        }
    }
    let completion = Completion {
        id: &message.id,
        object: "chat.completion",
        created,
        model,
        choices: [Choice {
            index: 0,
            message: Message {
                role: "assistant",
                content,
                reasoning_content: reasoning,
                tool_calls,
            },
            finish_reason: finish_reason(message.stop_reason.as_deref()),
        }],
        usage: message.usage.to_openai(),
    };
    serde_json::to_vec(&completion)
        .map(Bytes::from)
        .map_err(encode_error)
}

#[cfg(test)]
mod tests {
    use llmgw_proto::ErrorCode;

    use super::*;

    fn translate(body: &str) -> String {
        let bytes =
            completion_at(body.as_bytes(), "claude-alias", 1_700_000_000).expect("translates");
        String::from_utf8(bytes.to_vec()).expect("utf-8")
    }

    #[test]
    fn text_thinking_and_usage() {
        let body = r#"{"id":"msg_01","type":"message","role":"assistant","model":"claude-sonnet-4-5",
            "content":[{"type":"thinking","thinking":"Let me see.","signature":"c2ln"},
                {"type":"text","text":"Hello"},{"type":"text","text":" there"}],
            "stop_reason":"end_turn","stop_sequence":null,
            "usage":{"input_tokens":12,"cache_creation_input_tokens":3,"cache_read_input_tokens":100,"output_tokens":9}}"#;
        assert_eq!(
            translate(body),
            concat!(
                r#"{"id":"msg_01","object":"chat.completion","created":1700000000,"model":"claude-alias","#,
                r#""choices":[{"index":0,"message":{"role":"assistant","content":"Hello there","#,
                r#""reasoning_content":"Let me see."},"finish_reason":"stop"}],"#,
                r#""usage":{"prompt_tokens":115,"completion_tokens":9,"total_tokens":124,"#,
                r#""prompt_tokens_details":{"cached_tokens":100,"cache_creation_tokens":3}}}"#
            )
        );
    }

    #[test]
    fn tool_use_becomes_tool_calls() {
        let body = r#"{"id":"msg_02","type":"message","role":"assistant","model":"m",
            "content":[{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{"city":"Paris"}}],
            "stop_reason":"tool_use","usage":{"input_tokens":5,"output_tokens":3}}"#;
        assert_eq!(
            translate(body),
            concat!(
                r#"{"id":"msg_02","object":"chat.completion","created":1700000000,"model":"claude-alias","#,
                r#""choices":[{"index":0,"message":{"role":"assistant","content":null,"#,
                r#""tool_calls":[{"id":"toolu_1","type":"function","#,
                r#""function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},"#,
                r#""finish_reason":"tool_calls"}],"#,
                r#""usage":{"prompt_tokens":5,"completion_tokens":3,"total_tokens":8,"#,
                r#""prompt_tokens_details":{"cached_tokens":0}}}"#
            )
        );
    }

    #[test]
    fn stop_reasons() {
        for (stop, finish) in [
            ("end_turn", "stop"),
            ("stop_sequence", "stop"),
            ("max_tokens", "length"),
            ("tool_use", "tool_calls"),
        ] {
            let body = format!(r#"{{"id":"m","content":[],"stop_reason":"{stop}","usage":{{}}}}"#);
            let value: serde_json::Value = serde_json::from_str(&translate(&body)).expect("json");
            assert_eq!(value["choices"][0]["finish_reason"], finish, "{stop}");
        }
    }

    #[test]
    fn errors() {
        let error = completion_at(b"{\"id\": broken", "m", 0).expect_err("invalid");
        assert_eq!(error.code, ErrorCode::UpstreamError);
        assert_eq!(error.message, "the model provider returned invalid JSON");
        let body =
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        let error = completion_at(body, "m", 0).expect_err("error body");
        assert_eq!(error.code, ErrorCode::UpstreamError);
        assert!(error.message.contains("overloaded"));
    }
}
