//! The deterministic answer to one request, and its JSON renderings.
//!
//! Everything here is a pure function of the request body and settings so
//! that tests can predict the exact text and token counts.

use std::time::{SystemTime, UNIX_EPOCH};

use llmgw_openai::{
    AssistantMessage, ChatCompletion, ChatCompletionChunk, Choice, ChunkChoice,
    CompletionTokensDetails, Delta, PromptTokensDetails, Usage,
};
use serde_json::{Map, Value};

use crate::config::{BadSetting, Settings};

/// The vocabulary of every answer; content chunk `i` is
/// `WORDS[(seed + i) % WORDS.len()]` followed by a space.
pub const WORDS: [&str; 16] = [
    "the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "and", "then", "runs", "far",
    "away", "into", "green", "hills",
];

/// Reasoning chunks a `*reasoner*` model emits before its content.
const REASONING_CHUNKS: usize = 2;
const REASONING_TEXT: &str = "thinking ";
/// The id of the mock's one tool call.
const TOOL_CALL_ID: &str = "call_mock_1";
/// The arguments `{"city": "Paris"}`, streamed in pieces (pieces need not be
/// valid JSON on their own), as the Anthropic route streams its tool input.
pub const TOOL_ARGUMENT_PIECES: [&str; 3] = ["{\"city\"", ": \"Par", "is\"}"];

#[derive(Debug, Clone)]
pub struct Answer {
    pub id: String,
    pub created: u64,
    pub model: String,
    pub reasoning_chunks: usize,
    /// The text of each content chunk: a word and a space, or the
    /// request's `mock.content` pieces.
    pub pieces: Vec<String>,
    pub finish_reason: &'static str,
    pub usage: Usage,
    /// The whole request body, when the client asked for it back.
    pub echo: Option<Value>,
    /// The function the answer calls instead of answering in text (its
    /// arguments are the [`TOOL_ARGUMENT_PIECES`], in `pieces`).
    pub tool_call: Option<String>,
}

impl Answer {
    pub fn new(id: String, body: &Value, settings: &Settings) -> Result<Self, BadSetting> {
        let model = body.get("model").and_then(Value::as_str).unwrap_or("mock");
        let messages = body.get("messages").and_then(Value::as_array);
        let texts: Vec<String> = messages.into_iter().flatten().map(message_text).collect();
        let prompt_chars: usize = texts.iter().map(|text| text.chars().count()).sum();
        let seed = texts.last().map_or(0, |text| {
            text.bytes()
                .map(usize::from)
                .fold(0, |sum, byte| (sum + byte) % WORDS.len())
        });

        let tool_call = tool_to_call(body);
        let mut pieces: Vec<String> = match (&tool_call, &settings.content) {
            (Some(_), _) => TOOL_ARGUMENT_PIECES.map(str::to_owned).to_vec(),
            (None, Some(content)) => content.clone(),
            (None, None) => (0..settings.chunks as usize)
                .map(|i| word_chunk(WORDS[(seed + i) % WORDS.len()]))
                .collect(),
        };
        let mut finish_reason = "stop";
        let max = max_tokens(body)?;
        if tool_call.is_some() {
            finish_reason = "tool_calls";
        } else if let Some(max) = max
            && max < pieces.len() as u64
        {
            // `max < len` so the cast cannot truncate.
            pieces.truncate(max as usize);
            finish_reason = "length";
        }
        let count = pieces.len();

        let reasoning_chunks = if model.contains("reasoner") {
            REASONING_CHUNKS
        } else {
            0
        };
        let prompt_tokens = prompt_chars.div_ceil(4).max(1) as u64 + settings.cache_read_tokens;
        let completion_tokens = (count + reasoning_chunks) as u64;
        let usage = Usage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
            prompt_tokens_details: Some(PromptTokensDetails {
                cached_tokens: settings.cache_read_tokens,
                ..PromptTokensDetails::default()
            }),
            completion_tokens_details: Some(CompletionTokensDetails {
                reasoning_tokens: reasoning_chunks as u64,
            }),
        };
        Ok(Self {
            id,
            created: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |since| since.as_secs()),
            model: model.to_owned(),
            reasoning_chunks,
            pieces,
            finish_reason,
            usage,
            echo: settings.echo.then(|| body.clone()),
            tool_call,
        })
    }

    /// The non-streaming content: exactly the streamed content chunks joined.
    pub fn content(&self) -> String {
        self.pieces.concat()
    }

    pub fn completion(&self) -> ChatCompletion {
        let mut message_extra = Map::new();
        if self.reasoning_chunks > 0 {
            message_extra.insert(
                "reasoning_content".to_owned(),
                Value::String(REASONING_TEXT.repeat(self.reasoning_chunks)),
            );
        }
        if let Some(name) = &self.tool_call {
            message_extra.insert(
                "tool_calls".to_owned(),
                serde_json::json!([{"id": TOOL_CALL_ID, "type": "function",
                    "function": {"name": name, "arguments": self.content()}}]),
            );
        }
        ChatCompletion {
            id: self.id.clone(),
            object: "chat.completion".to_owned(),
            created: self.created,
            model: self.model.clone(),
            choices: vec![Choice {
                index: 0,
                message: AssistantMessage {
                    role: "assistant".to_owned(),
                    content: self.tool_call.is_none().then(|| self.content()),
                    extra: message_extra,
                },
                finish_reason: Some(self.finish_reason.to_owned()),
            }],
            usage: Some(self.usage.clone()),
            extra: self.echo_extra(),
        }
    }

    /// Streamed chunk `0`: the role, and the echoed request if asked for.
    pub fn role_chunk(&self) -> ChatCompletionChunk {
        let delta = Delta {
            role: Some("assistant".to_owned()),
            content: Some(String::new()),
            extra: Map::new(),
        };
        let mut chunk = self.chunk(delta, None);
        chunk.extra = self.echo_extra();
        chunk
    }

    pub fn reasoning_chunk(&self) -> ChatCompletionChunk {
        let mut extra = Map::new();
        extra.insert(
            "reasoning_content".to_owned(),
            Value::String(REASONING_TEXT.to_owned()),
        );
        self.chunk(
            Delta {
                role: None,
                content: None,
                extra,
            },
            None,
        )
    }

    pub fn content_chunk(&self, piece: &str) -> ChatCompletionChunk {
        let delta = Delta {
            role: None,
            content: Some(piece.to_owned()),
            extra: Map::new(),
        };
        self.chunk(delta, None)
    }

    /// Streamed piece `n`: content, or a tool call's arguments (the first
    /// one opening the call with its id and name).
    pub fn piece_chunk(&self, n: usize, piece: &str) -> ChatCompletionChunk {
        let Some(name) = &self.tool_call else {
            return self.content_chunk(piece);
        };
        let call = if n == 0 {
            serde_json::json!({"index": 0, "id": TOOL_CALL_ID, "type": "function",
                "function": {"name": name, "arguments": piece}})
        } else {
            serde_json::json!({"index": 0, "function": {"arguments": piece}})
        };
        let mut extra = Map::new();
        extra.insert("tool_calls".to_owned(), Value::Array(vec![call]));
        let delta = Delta {
            role: None,
            content: None,
            extra,
        };
        self.chunk(delta, None)
    }

    pub fn finish_chunk(&self) -> ChatCompletionChunk {
        self.chunk(Delta::default(), Some(self.finish_reason))
    }

    /// The `include_usage` trailer: no choices, just the totals.
    pub fn usage_chunk(&self) -> ChatCompletionChunk {
        let mut chunk = self.chunk(Delta::default(), None);
        chunk.choices.clear();
        chunk.usage = Some(self.usage.clone());
        chunk
    }

    fn chunk(&self, delta: Delta, finish_reason: Option<&str>) -> ChatCompletionChunk {
        ChatCompletionChunk {
            id: self.id.clone(),
            object: "chat.completion.chunk".to_owned(),
            created: self.created,
            model: self.model.clone(),
            choices: vec![ChunkChoice {
                index: 0,
                delta,
                finish_reason: finish_reason.map(str::to_owned),
            }],
            usage: None,
            extra: Map::new(),
        }
    }

    fn echo_extra(&self) -> Map<String, Value> {
        let mut extra = Map::new();
        if let Some(body) = &self.echo {
            extra.insert("mock_request".to_owned(), body.clone());
        }
        extra
    }
}

/// The first tool's name, when the request offers tools and its last
/// message is the user's, mentioning the weather (after a tool result the
/// model answers in text, so a round trip ends).
fn tool_to_call(body: &Value) -> Option<String> {
    let first = body.get("tools")?.as_array()?.first()?;
    let last = body.get("messages")?.as_array()?.last()?;
    if last.get("role").and_then(Value::as_str) != Some("user") {
        return None;
    }
    message_text(last)
        .to_lowercase()
        .contains("weather")
        .then(|| {
            first
                .pointer("/function/name")
                .and_then(Value::as_str)
                .unwrap_or("tool")
                .to_owned()
        })
}

fn word_chunk(word: &str) -> String {
    format!("{word} ")
}

/// A message's text: string content, or the `text` of each array part.
fn message_text(message: &Value) -> String {
    match message.get("content") {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|part| part.get("text").and_then(Value::as_str))
            .collect(),
        _ => String::new(),
    }
}

/// The first of `max_completion_tokens` / `max_tokens` that is present.
fn max_tokens(body: &Value) -> Result<Option<u64>, BadSetting> {
    for name in ["max_completion_tokens", "max_tokens"] {
        match body.get(name) {
            None | Some(Value::Null) => continue,
            Some(value) => {
                return value.as_u64().map(Some).ok_or_else(|| BadSetting {
                    param: name.to_owned(),
                    message: format!("Invalid value for {name}: expected a non-negative integer."),
                });
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use serde_json::json;

    fn answer(body: Value) -> Answer {
        let settings = Settings::resolve(&Config::default(), &http::HeaderMap::new(), &body)
            .expect("valid settings");
        Answer::new("chatcmpl-mock-0".to_owned(), &body, &settings).expect("valid request")
    }

    #[test]
    fn text_and_usage_follow_the_request() {
        // "ab" = 97 + 98 = 195, 195 % 16 = 3 -> starts at "fox".
        let body = json!({"model": "m", "messages": [
            {"role": "system", "content": "héllo"},
            {"role": "user", "content": [{"type": "text", "text": "ab"}]}
        ]});
        let answer = answer(body);
        assert_eq!(answer.content(), "fox jumps over lazy dog and then runs ");
        assert_eq!(answer.usage.prompt_tokens, 2); // ceil(7 / 4)
        assert_eq!(answer.usage.completion_tokens, 8);
        assert_eq!(answer.usage.total_tokens, 10);
        assert_eq!(answer.finish_reason, "stop");
    }

    #[test]
    fn max_tokens_cuts_and_reasoner_thinks() {
        let body = json!({"model": "deepseek-reasoner", "messages": [], "max_tokens": 3,
            "max_completion_tokens": 2});
        let answer = answer(body);
        assert_eq!(answer.pieces.len(), 2);
        assert_eq!(answer.finish_reason, "length");
        assert_eq!(answer.usage.prompt_tokens, 1);
        assert_eq!(answer.usage.completion_tokens, 4);
        assert_eq!(answer.usage.reasoning_tokens(), 2);
    }
}
