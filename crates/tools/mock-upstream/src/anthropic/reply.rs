//! The deterministic answer to one Messages request, in Anthropic's shapes.
//!
//! Text and token counts come from [`Answer`], the OpenAI route's answer,
//! computed for the same conversation (the `system` prompt counts as a first
//! message, as a system message does there), so both routes agree.

use serde_json::{Value, json};

use crate::completion::Answer;
use crate::config::{BadSetting, Settings};

/// Each reasoning step of a `*reasoner*` model, as on the OpenAI route.
const THINKING_PIECE: &str = "thinking ";
/// Anthropic signs thinking blocks; clients must send the signature back.
const SIGNATURE: &str = "bW9jay1zaWduYXR1cmU=";
const TOOL_USE_ID: &str = "toolu_mock_1";
/// The tool input `{"city": "Paris"}`, streamed in pieces as Anthropic does
/// (pieces need not be valid JSON on their own).
const TOOL_INPUT_PIECES: [&str; 3] = ["{\"city\"", ": \"Par", "is\"}"];

#[derive(Debug)]
pub(crate) struct Reply {
    pub id: String,
    pub model: String,
    pub blocks: Vec<Block>,
    pub stop_reason: &'static str,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_tokens: u64,
    pub cache_write_tokens: u64,
}

#[derive(Debug)]
pub(crate) enum Block {
    Thinking { pieces: usize },
    Text { pieces: Vec<String> },
    ToolUse { name: String },
}

impl Reply {
    /// `request` has passed validation (model, `max_tokens`, messages).
    pub fn new(id: String, request: &Value, settings: &Settings) -> Result<Reply, BadSetting> {
        let model = request
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or("mock");
        let system = request.get("system").map(text).into_iter();
        let messages = request.get("messages").and_then(Value::as_array);
        let texts = system.chain(
            messages
                .into_iter()
                .flatten()
                .map(|message| message.get("content").map(text).unwrap_or_default()),
        );
        let conversation = json!({
            "model": model,
            "max_tokens": request.get("max_tokens"),
            "messages": texts.map(|text| json!({"content": text})).collect::<Vec<_>>(),
        });
        let answer = Answer::new(id.clone(), &conversation, settings)?;

        let mut blocks = Vec::new();
        if answer.reasoning_chunks > 0 {
            blocks.push(Block::Thinking {
                pieces: answer.reasoning_chunks,
            });
        }
        let (stop_reason, output_tokens) = match tool_to_call(request) {
            Some(name) => {
                blocks.push(Block::ToolUse { name });
                let tokens = answer.reasoning_chunks + TOOL_INPUT_PIECES.len();
                ("tool_use", tokens as u64)
            }
            None => {
                let stop_reason = match answer.finish_reason {
                    "length" => "max_tokens",
                    _ => "end_turn",
                };
                blocks.push(Block::Text {
                    pieces: answer.pieces,
                });
                (stop_reason, answer.usage.completion_tokens)
            }
        };
        Ok(Reply {
            id,
            model: model.to_owned(),
            blocks,
            stop_reason,
            // Anthropic's input tokens are the uncached part of the prompt.
            input_tokens: answer.usage.prompt_tokens - settings.cache_read_tokens,
            output_tokens,
            cache_read_tokens: settings.cache_read_tokens,
            cache_write_tokens: settings.cache_write_tokens,
        })
    }

    /// The non-streaming response body.
    pub fn message(&self) -> Value {
        let content: Vec<Value> = self.blocks.iter().map(Block::complete).collect();
        json!({
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": content,
            "stop_reason": self.stop_reason,
            "stop_sequence": null,
            "usage": self.usage(self.output_tokens),
        })
    }

    /// The `message` of `message_start`: no content yet, and the output
    /// count so far (Anthropic reports a token or so here).
    pub fn started(&self) -> Value {
        json!({
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": null,
            "stop_sequence": null,
            "usage": self.usage(1),
        })
    }

    fn usage(&self, output_tokens: u64) -> Value {
        json!({
            "input_tokens": self.input_tokens,
            "cache_creation_input_tokens": self.cache_write_tokens,
            "cache_read_input_tokens": self.cache_read_tokens,
            "output_tokens": output_tokens,
        })
    }
}

impl Block {
    /// Streamed deltas in this block.
    pub fn pieces(&self) -> usize {
        match self {
            Block::Thinking { pieces } => *pieces,
            Block::Text { pieces } => pieces.len(),
            Block::ToolUse { .. } => TOOL_INPUT_PIECES.len(),
        }
    }

    /// The whole block, for non-streaming answers.
    fn complete(&self) -> Value {
        match self {
            Block::Thinking { pieces } => json!({
                "type": "thinking",
                "thinking": THINKING_PIECE.repeat(*pieces),
                "signature": SIGNATURE,
            }),
            Block::Text { pieces } => json!({
                "type": "text",
                "text": pieces.concat(),
            }),
            Block::ToolUse { name } => json!({
                "type": "tool_use",
                "id": TOOL_USE_ID,
                "name": name,
                "input": {"city": "Paris"},
            }),
        }
    }

    /// The block as `content_block_start` announces it: empty.
    pub fn started(&self) -> Value {
        match self {
            Block::Thinking { .. } => json!({"type": "thinking", "thinking": "", "signature": ""}),
            Block::Text { .. } => json!({"type": "text", "text": ""}),
            Block::ToolUse { name } => {
                json!({"type": "tool_use", "id": TOOL_USE_ID, "name": name, "input": {}})
            }
        }
    }

    /// Delta `i` of the block.
    pub fn delta(&self, i: usize) -> Value {
        match self {
            Block::Thinking { .. } => json!({"type": "thinking_delta", "thinking": THINKING_PIECE}),
            Block::Text { pieces } => {
                let piece = pieces.get(i).map_or("", String::as_str);
                json!({"type": "text_delta", "text": piece})
            }
            Block::ToolUse { .. } => {
                let piece = TOOL_INPUT_PIECES.get(i).copied().unwrap_or_default();
                json!({"type": "input_json_delta", "partial_json": piece})
            }
        }
    }

    /// The delta that closes a thinking block.
    pub fn signature(&self) -> Option<Value> {
        matches!(self, Block::Thinking { .. })
            .then(|| json!({"type": "signature_delta", "signature": SIGNATURE}))
    }
}

/// The first tool's name, when the request offers tools and the last user
/// turn's own text (not a tool result, so a round trip ends) mentions the
/// weather.
fn tool_to_call(request: &Value) -> Option<String> {
    let first = request.get("tools")?.as_array()?.first()?;
    let last_user = request
        .get("messages")?
        .as_array()?
        .iter()
        .rev()
        .find(|message| message.get("role").and_then(Value::as_str) == Some("user"))?;
    let said = match last_user.get("content")? {
        Value::String(text) => text.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter(|block| block.get("type").and_then(Value::as_str) == Some("text"))
            .filter_map(|block| block.get("text").and_then(Value::as_str))
            .collect(),
        _ => String::new(),
    };
    said.to_lowercase().contains("weather").then(|| {
        let name = first.get("name").and_then(Value::as_str);
        name.unwrap_or("tool").to_owned()
    })
}

/// The text of a `system` prompt or message `content`: a string, or its
/// text blocks and tool results' text (tool output is prompt too).
fn text(content: &Value) -> String {
    match content {
        Value::String(text) => text.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .map(|block| match block.get("type").and_then(Value::as_str) {
                Some("text") => block.get("text").map(text).unwrap_or_default(),
                Some("tool_result") => block.get("content").map(text).unwrap_or_default(),
                _ => String::new(),
            })
            .collect(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn answer(request: Value) -> Reply {
        let settings = Settings::resolve(&Config::default(), &http::HeaderMap::new(), &request)
            .expect("valid settings");
        Reply::new("msg_mock_0".to_owned(), &request, &settings).expect("valid request")
    }

    #[test]
    fn same_words_and_tokens_as_the_openai_route() {
        // "ab" = 97 + 98 = 195, 195 % 16 = 3 -> starts at "fox", as in
        // completion.rs; "héllo" + "ab" = 7 chars -> 2 tokens.
        let reply = answer(json!({"model": "m", "max_tokens": 100, "system": "héllo",
            "messages": [{"role": "user", "content": [{"type": "text", "text": "ab"}]}]}));
        assert_eq!(
            reply.message()["content"][0]["text"],
            "fox jumps over lazy dog and then runs "
        );
        assert_eq!((reply.input_tokens, reply.output_tokens), (2, 8));
        assert_eq!(reply.stop_reason, "end_turn");
    }

    #[test]
    fn weather_calls_the_first_tool_once() {
        let tools = json!([{"name": "get_weather", "input_schema": {"type": "object"}}]);
        let asked = json!([{"role": "user", "content": "What's the Weather in Paris?"}]);
        let reply =
            answer(json!({"model": "m", "max_tokens": 5, "tools": tools, "messages": asked}));
        assert_eq!(reply.stop_reason, "tool_use");
        assert_eq!(
            reply.message()["content"],
            json!([{"type": "tool_use", "id": "toolu_mock_1", "name": "get_weather",
                "input": {"city": "Paris"}}])
        );
        let streamed: String = (0..3)
            .filter_map(|i| {
                reply.blocks[0].delta(i)["partial_json"]
                    .as_str()
                    .map(str::to_owned)
            })
            .collect();
        assert_eq!(
            serde_json::from_str::<Value>(&streamed).expect("json"),
            json!({"city": "Paris"})
        );

        let answered = json!([
            {"role": "user", "content": "What's the weather in Paris?"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_mock_1",
                "name": "get_weather", "input": {"city": "Paris"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_mock_1",
                "content": "weather: 18°C"}]}
        ]);
        let reply =
            answer(json!({"model": "m", "max_tokens": 5, "tools": tools, "messages": answered}));
        assert_eq!(reply.stop_reason, "max_tokens");
        assert_eq!(reply.output_tokens, 5);
    }
}
