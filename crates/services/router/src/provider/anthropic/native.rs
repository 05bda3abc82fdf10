//! Messages calls to Anthropic deployments: no translation. The client's
//! body goes upstream as it came, apart from the model name, and the answer
//! comes back as Anthropic sent it, so thinking blocks and their
//! signatures, cache control, citations, server tools and fields added
//! after this was written all keep every byte.
//!
//! The router still reads what it accounts: [`NativeStream`] reads each
//! streamed event (usage including cache writes and reads, the stop
//! reason, the generated text for an estimate if the stream is cut) and
//! [`read_message`] a whole answer.

use std::borrow::Cow;

use bytes::Bytes;
use llmgw_proto::router_v1::{Usage, UsageSource};
use serde::Deserialize;

use super::inbound::frame;
use super::{ErrorView, UsageView, finish_reason};
use crate::provider::upstream_error::invalid_json;
use crate::provider::{ProviderError, UpstreamRequest, model_field};

/// The client's body with `model` set to the deployment's model (see
/// [`model_field::replace`]).
pub fn build_request(body: &[u8], upstream_model: &str) -> Result<UpstreamRequest, ProviderError> {
    model_field::replace(body, upstream_model).map(|body| UpstreamRequest { body })
}

impl UsageView {
    /// Anthropic's parts of the prompt summed, as llmgw bills them:
    /// `prompt_tokens` holds them all, `cached_tokens` the cache reads,
    /// `cache_creation_tokens` the writes.
    pub(crate) fn to_usage(self) -> Usage {
        let read = self.cache_read_input_tokens.unwrap_or(0);
        let write = self.cache_creation_input_tokens.unwrap_or(0);
        let prompt_tokens = self
            .input_tokens
            .unwrap_or(0)
            .saturating_add(read)
            .saturating_add(write);
        let completion_tokens = self.output_tokens.unwrap_or(0);
        Usage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens.saturating_add(completion_tokens),
            cached_tokens: read,
            reasoning_tokens: 0,
            source: UsageSource::Reported.into(),
            cache_creation_tokens: write,
        }
    }
}

/// Every field of any event that matters for accounting; one parse each.
#[derive(Debug, Deserialize)]
struct EventView<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    /// `message_start`.
    #[serde(default)]
    message: Option<StartedView>,
    /// `content_block_start`.
    #[serde(default, borrow)]
    content_block: Option<BlockStartView<'a>>,
    /// `content_block_delta` (the block's delta) and `message_delta` (the
    /// stop reason).
    #[serde(default, borrow)]
    delta: Option<DeltaView<'a>>,
    /// `message_delta`.
    #[serde(default)]
    usage: Option<UsageView>,
    /// `error`.
    #[serde(default, borrow)]
    error: Option<ErrorView<'a>>,
}

#[derive(Debug, Deserialize)]
struct StartedView {
    #[serde(default)]
    usage: UsageView,
}

#[derive(Debug, Deserialize)]
struct BlockStartView<'a> {
    #[serde(default, borrow)]
    name: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    thinking: Option<Cow<'a, str>>,
}

#[derive(Debug, Deserialize)]
struct DeltaView<'a> {
    #[serde(default, borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    thinking: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    partial_json: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    stop_reason: Option<Cow<'a, str>>,
}

/// What one upstream event told us, and the frame to forward.
#[derive(Debug)]
pub struct Seen {
    /// The event, framed as Anthropic frames it (`event:` + `data:`).
    pub frame: Bytes,
    /// The usage so far changed (`message_start`, `message_delta`).
    pub usage: Option<Usage>,
    /// The OpenAI-style finish reason, when the stop reason came.
    pub finish_reason: Option<&'static str>,
    /// `message_stop`: the answer is complete.
    pub stopped: bool,
}

/// Reads one streamed answer passed through; create one per call.
#[derive(Debug, Default)]
pub struct NativeStream {
    usage: UsageView,
}

impl NativeStream {
    pub fn new() -> NativeStream {
        NativeStream::default()
    }

    /// Reads one event; its generated text is appended to `generated` (for
    /// an estimate if the stream never reports usage). An `error` event is
    /// the call's error. Unknown event types pass through untouched.
    pub fn on_event(
        &mut self,
        event: &str,
        data: &str,
        generated: &mut String,
    ) -> Result<Seen, ProviderError> {
        let view: EventView = serde_json::from_str(data).map_err(|_| invalid_json())?;
        // The `event:` name is authoritative; `type` stands in for proxies
        // that drop event names.
        let kind = if event.is_empty() || event == "message" {
            view.kind.as_ref()
        } else {
            event
        };
        let mut seen = Seen {
            frame: frame(kind, data.as_bytes()),
            usage: None,
            finish_reason: None,
            stopped: false,
        };
        match kind {
            "message_start" => {
                if let Some(message) = view.message {
                    self.usage.update(message.usage);
                    seen.usage = Some(self.usage.to_usage());
                }
            }
            "content_block_start" => {
                if let Some(block) = &view.content_block {
                    for text in [&block.name, &block.text, &block.thinking]
                        .into_iter()
                        .flatten()
                    {
                        generated.push_str(text);
                    }
                }
            }
            "content_block_delta" => {
                if let Some(delta) = &view.delta {
                    for text in [&delta.text, &delta.thinking, &delta.partial_json]
                        .into_iter()
                        .flatten()
                    {
                        generated.push_str(text);
                    }
                }
            }
            "message_delta" => {
                if let Some(usage) = view.usage {
                    self.usage.update(usage);
                    seen.usage = Some(self.usage.to_usage());
                }
                let stop = view.delta.as_ref().and_then(|d| d.stop_reason.as_deref());
                seen.finish_reason = Some(finish_reason(stop));
            }
            "message_stop" => seen.stopped = true,
            "error" => {
                let error = view.error.ok_or_else(invalid_json)?;
                return Err(error.into_provider_error());
            }
            // `ping`, `content_block_stop`, and types added later.
            _ => {}
        }
        Ok(seen)
    }
}

/// The `message_stop` a stream that ended cleanly after its stop reason
/// but without one gets (clients wait for it).
pub fn message_stop() -> Bytes {
    frame("message_stop", br#"{"type":"message_stop"}"#)
}

/// What a whole answer told us.
#[derive(Debug)]
pub struct ReadMessage {
    pub usage: Usage,
    pub finish_reason: &'static str,
    /// The text generated (for an estimate; Anthropic always reports
    /// usage, so it is rarely needed).
    pub generated: String,
}

#[derive(Debug, Deserialize)]
struct MessageView<'a> {
    #[serde(default, borrow)]
    content: Vec<BlockStartView<'a>>,
    #[serde(default, borrow)]
    stop_reason: Option<Cow<'a, str>>,
    #[serde(default)]
    usage: Option<UsageView>,
    #[serde(default, borrow)]
    error: Option<ErrorView<'a>>,
}

/// Reads a whole Messages answer passed through (an error body despite the
/// 200 is the call's error).
pub fn read_message(body: &[u8]) -> Result<ReadMessage, ProviderError> {
    let message: MessageView = serde_json::from_slice(body).map_err(|_| invalid_json())?;
    if let Some(error) = message.error {
        return Err(error.into_provider_error());
    }
    let mut generated = String::new();
    for block in &message.content {
        for text in [&block.name, &block.text, &block.thinking]
            .into_iter()
            .flatten()
        {
            generated.push_str(text);
        }
    }
    let usage = match message.usage {
        Some(usage) => usage.to_usage(),
        None => Usage::default(),
    };
    Ok(ReadMessage {
        usage,
        finish_reason: finish_reason(message.stop_reason.as_deref()),
        generated,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_pass_as_they_came_and_usage_adds_up() {
        let mut stream = NativeStream::new();
        let mut generated = String::new();
        let start = r#"{"type":"message_start","message":{"id":"msg_1","usage":{"input_tokens":10,"cache_creation_input_tokens":100,"cache_read_input_tokens":1000,"output_tokens":1}}}"#;
        let seen = stream
            .on_event("message_start", start, &mut generated)
            .expect("reads");
        assert_eq!(
            &seen.frame[..],
            format!("event: message_start\ndata: {start}\n\n").as_bytes()
        );
        let usage = seen.usage.expect("usage");
        assert_eq!(
            (
                usage.prompt_tokens,
                usage.cached_tokens,
                usage.cache_creation_tokens
            ),
            (1110, 1000, 100)
        );
        let delta = r#"{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"Hm"}}"#;
        // No event name (a proxy dropped it): the type names the frame.
        let seen = stream.on_event("", delta, &mut generated).expect("reads");
        assert!(seen.frame.starts_with(b"event: content_block_delta\n"));
        let signature = r#"{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"c2ln"}}"#;
        stream
            .on_event("content_block_delta", signature, &mut generated)
            .expect("reads");
        let end = r#"{"type":"message_delta","delta":{"stop_reason":"max_tokens","stop_sequence":null},"usage":{"output_tokens":42}}"#;
        let seen = stream
            .on_event("message_delta", end, &mut generated)
            .expect("reads");
        assert_eq!(seen.finish_reason, Some("length"));
        let usage = seen.usage.expect("usage");
        assert_eq!((usage.prompt_tokens, usage.completion_tokens), (1110, 42));
        assert_eq!(generated, "Hm");
        let stop = stream
            .on_event("message_stop", r#"{"type":"message_stop"}"#, &mut generated)
            .expect("reads");
        assert!(stop.stopped);
        let error = stream
            .on_event(
                "error",
                r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
                &mut generated,
            )
            .expect_err("an error event");
        assert_eq!(error.code, llmgw_proto::ErrorCode::UpstreamError);
    }

    #[test]
    fn model_is_replaced_and_the_rest_kept() {
        let body = br#"{"model":"alias","max_tokens":5,"thinking":{"type":"enabled","budget_tokens":1024},"messages":[{"role":"user","content":[{"type":"text","text":"x","cache_control":{"type":"ephemeral"}}]}]}"#;
        let request = build_request(body, "claude-sonnet-4-5").expect("rewritten");
        let expected = String::from_utf8_lossy(body).replace("\"alias\"", "\"claude-sonnet-4-5\"");
        assert_eq!(String::from_utf8_lossy(&request.body), expected);
        let added = build_request(br#"{"max_tokens":5}"#, "m").expect("rewritten");
        assert_eq!(&added.body[..], br#"{"max_tokens":5,"model":"m"}"#);
        let read = read_message(
            br#"{"id":"m","content":[{"type":"text","text":"Hi"}],"stop_reason":"end_turn","usage":{"input_tokens":3,"output_tokens":2}}"#,
        )
        .expect("reads");
        assert_eq!(read.finish_reason, "stop");
        assert_eq!(read.usage.prompt_tokens, 3);
        assert_eq!(read.generated, "Hi");
    }
}
