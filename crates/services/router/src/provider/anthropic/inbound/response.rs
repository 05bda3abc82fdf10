//! An OpenAI `chat.completion` -> an Anthropic `message`, for a Messages
//! call served by an OpenAI-compatible deployment (or an Anthropic one
//! whose answer went through the OpenAI form for the content policy).

use std::borrow::Cow;

use bytes::Bytes;
use llmgw_openai::Usage as OpenaiUsage;
use llmgw_proto::ErrorCode;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::{MessageUsage, stop_reason};
use crate::provider::ProviderError;
use crate::provider::upstream_error::invalid_json;

#[derive(Debug, Deserialize)]
struct CompletionView<'a> {
    #[serde(default, borrow)]
    id: Cow<'a, str>,
    #[serde(default, borrow)]
    model: Cow<'a, str>,
    #[serde(default, borrow)]
    choices: Vec<ChoiceView<'a>>,
    #[serde(default)]
    usage: Option<OpenaiUsage>,
}

#[derive(Debug, Deserialize)]
struct ChoiceView<'a> {
    #[serde(default, borrow)]
    message: Option<MessageView<'a>>,
    #[serde(default, borrow)]
    finish_reason: Option<Cow<'a, str>>,
}

#[derive(Debug, Deserialize)]
struct MessageView<'a> {
    #[serde(default, borrow)]
    content: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    reasoning_content: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    tool_calls: Option<Vec<ToolCallView<'a>>>,
}

#[derive(Debug, Deserialize)]
struct ToolCallView<'a> {
    #[serde(default, borrow)]
    id: Cow<'a, str>,
    #[serde(borrow)]
    function: FunctionView<'a>,
}

#[derive(Debug, Deserialize)]
struct FunctionView<'a> {
    #[serde(default, borrow)]
    name: Cow<'a, str>,
    #[serde(default, borrow)]
    arguments: Cow<'a, str>,
}

#[derive(Debug, Serialize)]
struct Message<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    model: &'a str,
    content: Vec<Block<'a>>,
    stop_reason: &'static str,
    stop_sequence: Option<()>,
    usage: MessageUsage,
}

#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Block<'a> {
    Thinking {
        thinking: &'a str,
        /// OpenAI-compatible upstreams do not sign their reasoning.
        signature: &'static str,
    },
    Text {
        text: &'a str,
    },
    ToolUse {
        id: &'a str,
        name: &'a str,
        input: Box<RawValue>,
    },
}

/// Translates a whole OpenAI answer (its first choice: Messages has no
/// `n`) into an Anthropic message.
pub fn completion_to_message(body: &[u8]) -> Result<Bytes, ProviderError> {
    let completion: CompletionView = serde_json::from_slice(body).map_err(|_| invalid_json())?;
    let choice = completion.choices.into_iter().next();
    let (message, finish_reason) = match choice {
        Some(choice) => (choice.message, choice.finish_reason),
        None => (None, None),
    };
    let mut content = Vec::new();
    if let Some(message) = &message {
        if let Some(thinking) = message
            .reasoning_content
            .as_deref()
            .filter(|t| !t.is_empty())
        {
            content.push(Block::Thinking {
                thinking,
                signature: "",
            });
        }
        if let Some(text) = message.content.as_deref().filter(|t| !t.is_empty()) {
            content.push(Block::Text { text });
        }
        for call in message.tool_calls.iter().flatten() {
            content.push(Block::ToolUse {
                id: &call.id,
                name: &call.function.name,
                input: tool_input(&call.function.arguments),
            });
        }
    }
    let usage = completion
        .usage
        .as_ref()
        .map(MessageUsage::of_openai)
        .unwrap_or_default();
    let message = Message {
        id: &completion.id,
        kind: "message",
        role: "assistant",
        model: &completion.model,
        content,
        stop_reason: stop_reason(finish_reason.as_deref()),
        stop_sequence: None,
        usage,
    };
    serde_json::to_vec(&message)
        .map(Bytes::from)
        .map_err(|_| ProviderError::new(ErrorCode::Internal, "could not encode the answer"))
}

/// A tool call's arguments (a JSON string) as Anthropic's `input` object;
/// `{}` when the model sent none or no object.
pub(super) fn tool_input(arguments: &str) -> Box<RawValue> {
    let arguments = arguments.trim();
    serde_json::from_str::<Box<RawValue>>(arguments)
        .ok()
        .filter(|input| input.get().starts_with('{'))
        .unwrap_or_else(empty_object)
}

fn empty_object() -> Box<RawValue> {
    // `{}` is valid JSON: the default (`null`) is never used.
    RawValue::from_string("{}".to_owned()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn translate(completion: Value) -> Value {
        let body = completion_to_message(completion.to_string().as_bytes()).expect("translates");
        serde_json::from_slice(&body).expect("json")
    }

    #[test]
    fn text_reasoning_tools_and_usage() {
        let completion = json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-up",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": "Checking.", "reasoning_content": "Hmm.",
                "tool_calls": [{"id": "call_1", "type": "function",
                    "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]}}],
            "usage": {"prompt_tokens": 30, "completion_tokens": 7, "total_tokens": 37,
                      "prompt_tokens_details": {"cached_tokens": 10, "cache_creation_tokens": 5}},
        });
        assert_eq!(
            translate(completion),
            json!({
                "id": "chatcmpl-1", "type": "message", "role": "assistant", "model": "gpt-up",
                "content": [
                    {"type": "thinking", "thinking": "Hmm.", "signature": ""},
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}}],
                "stop_reason": "tool_use", "stop_sequence": null,
                "usage": {"input_tokens": 15, "cache_creation_input_tokens": 5,
                          "cache_read_input_tokens": 10, "output_tokens": 7},
            })
        );
    }

    #[test]
    fn finish_reasons_and_bad_arguments() {
        for (finish, stop) in [
            ("stop", "end_turn"),
            ("length", "max_tokens"),
            ("content_filter", "refusal"),
            ("function_call", "tool_use"),
        ] {
            let completion = json!({"id": "c", "model": "m", "choices": [{"finish_reason": finish,
                "message": {"content": "x"}}]});
            assert_eq!(translate(completion)["stop_reason"], stop, "{finish}");
        }
        assert_eq!(tool_input("not json").get(), "{}");
        assert_eq!(tool_input("[1]").get(), "{}");
        assert!(completion_to_message(b"{broken").is_err());
    }
}
