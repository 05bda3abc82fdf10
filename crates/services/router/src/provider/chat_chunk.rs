//! The OpenAI `chat.completion.chunk`, the one format every provider's
//! stream is relayed in (Anthropic events are translated into it): what the
//! router reads of each chunk, and the closing chunk it adds when an
//! upstream left one out.

use std::borrow::Cow;

use bytes::Bytes;
use llmgw_openai::Usage;
use serde::Deserialize;

/// What the router reads of a streamed chunk; the chunk itself is forwarded
/// as the upstream wrote it.
#[derive(Debug, Deserialize)]
pub struct ChunkView<'a> {
    #[serde(default, borrow)]
    pub id: Cow<'a, str>,
    #[serde(default)]
    pub created: u64,
    #[serde(default, borrow)]
    pub model: Cow<'a, str>,
    #[serde(default, borrow)]
    pub choices: Vec<ChoiceView<'a>>,
    #[serde(default)]
    pub usage: Option<Usage>,
}

#[derive(Debug, Deserialize)]
pub struct ChoiceView<'a> {
    #[serde(default)]
    pub index: u32,
    #[serde(default, borrow)]
    pub delta: Option<DeltaView<'a>>,
    #[serde(default, borrow)]
    pub message: Option<DeltaView<'a>>,
    #[serde(default, borrow)]
    pub finish_reason: Option<Cow<'a, str>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct DeltaView<'a> {
    #[serde(default, borrow)]
    pub content: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub reasoning_content: Option<Cow<'a, str>>,
    /// `Option`: some providers send `"tool_calls": null`.
    #[serde(default, borrow)]
    pub tool_calls: Option<Vec<ToolCallView<'a>>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct ToolCallView<'a> {
    #[serde(default)]
    pub index: u32,
    /// Sent with a call's first delta.
    #[serde(default, borrow)]
    pub id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub function: Option<FunctionView<'a>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct FunctionView<'a> {
    #[serde(default, borrow)]
    pub name: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub arguments: Option<Cow<'a, str>>,
}

impl DeltaView<'_> {
    /// The generated text (answer, reasoning, tool names and arguments), for
    /// token estimates when the provider reports no usage.
    pub fn generated_text(&self, into: &mut String) {
        let texts = [&self.content, &self.reasoning_content]
            .into_iter()
            .flatten()
            .chain(
                self.tool_calls
                    .iter()
                    .flatten()
                    .filter_map(|call| call.function.as_ref())
                    .flat_map(|function| {
                        [&function.name, &function.arguments].into_iter().flatten()
                    }),
            );
        for text in texts {
            into.push_str(text);
        }
    }
}

/// A final chunk carrying `finish_reason`, for upstreams whose stream ended
/// cleanly without one (clients such as LiteLLM reject such streams).
pub fn finish_chunk(id: &str, created: u64, model: &str, finish_reason: &str) -> Bytes {
    let chunk = serde_json::json!({
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": {}, "finish_reason": finish_reason}],
    });
    Bytes::from(chunk.to_string())
}
