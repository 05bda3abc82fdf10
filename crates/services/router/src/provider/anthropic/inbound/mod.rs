//! Clients speaking Anthropic's Messages API to llmgw (`POST /v1/messages`)
//! when the deployment serving them speaks OpenAI chat completions: the
//! request is translated to chat completions ([`to_chat_request`]) and the
//! answer back, whole ([`completion_to_message`]) or streamed
//! ([`MessagesEncoder`]: OpenAI chunks -> Anthropic's event sequence).
//!
//! Anthropic deployments are not translated at all (see `native`): the
//! client's body goes upstream as it came, apart from the model name.

mod request;
mod response;
#[cfg(test)]
mod roundtrip;
mod stream;

use bytes::{BufMut as _, Bytes, BytesMut};
use llmgw_openai::Usage as OpenaiUsage;
use llmgw_proto::router_v1::Usage;
use serde::Serialize;

pub use request::to_chat_request;
pub use response::completion_to_message;
pub use stream::MessagesEncoder;

/// Anthropic's `usage`: the prompt in three parts (uncached input, cache
/// writes, cache reads) and the output.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MessageUsage {
    pub input_tokens: u64,
    pub cache_creation_input_tokens: u64,
    pub cache_read_input_tokens: u64,
    pub output_tokens: u64,
}

impl MessageUsage {
    /// OpenAI counts every prompt token in `prompt_tokens`; Anthropic's
    /// `input_tokens` are the uncached ones.
    pub fn of_openai(usage: &OpenaiUsage) -> MessageUsage {
        MessageUsage::split(
            usage.prompt_tokens,
            usage.cached_tokens(),
            usage.cache_creation_tokens(),
            usage.completion_tokens,
        )
    }

    /// The usage an attempt was billed, as the client is told it.
    pub fn of_usage(usage: &Usage) -> MessageUsage {
        MessageUsage::split(
            usage.prompt_tokens,
            usage.cached_tokens,
            usage.cache_creation_tokens,
            usage.completion_tokens,
        )
    }

    fn split(prompt: u64, read: u64, write: u64, output: u64) -> MessageUsage {
        let read = read.min(prompt);
        let write = write.min(prompt - read);
        MessageUsage {
            input_tokens: prompt - read - write,
            cache_creation_input_tokens: write,
            cache_read_input_tokens: read,
            output_tokens: output,
        }
    }
}

/// OpenAI `finish_reason` -> Anthropic `stop_reason`.
pub fn stop_reason(finish_reason: Option<&str>) -> &'static str {
    match finish_reason {
        Some("length") => "max_tokens",
        Some("tool_calls" | "function_call") => "tool_use",
        Some("content_filter") => "refusal",
        // `stop` (OpenAI does not say whether a stop sequence ended it),
        // and reasons added later.
        _ => "end_turn",
    }
}

/// One server-sent event as Anthropic frames it: `event: <type>` and
/// `data: <json>`.
pub fn frame(kind: &str, data: &[u8]) -> Bytes {
    let mut frame = BytesMut::with_capacity(kind.len() + data.len() + 16);
    frame.put_slice(b"event: ");
    frame.put_slice(kind.as_bytes());
    frame.put_slice(b"\ndata: ");
    frame.put_slice(data);
    frame.put_slice(b"\n\n");
    frame.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_splits_the_prompt() {
        let usage = Usage {
            prompt_tokens: 100,
            cached_tokens: 60,
            cache_creation_tokens: 30,
            completion_tokens: 5,
            ..Usage::default()
        };
        assert_eq!(
            MessageUsage::of_usage(&usage),
            MessageUsage {
                input_tokens: 10,
                cache_creation_input_tokens: 30,
                cache_read_input_tokens: 60,
                output_tokens: 5,
            }
        );
        assert_eq!(
            &frame("ping", br#"{"type":"ping"}"#)[..],
            b"event: ping\ndata: {\"type\":\"ping\"}\n\n"
        );
    }
}
