//! A streamed Anthropic message -> OpenAI `chat.completion.chunk`s.
//!
//! Anthropic streams typed events (`message_start`, content blocks with
//! their deltas, `message_delta`, `message_stop`); OpenAI streams chunks
//! with a delta each. Each event is parsed through a small borrowed view and
//! each chunk written from a small struct, so translating costs about as
//! much as the JSON parse the router does for OpenAI upstreams anyway.

use std::borrow::Cow;

use bytes::Bytes;
use llmgw_openai::Usage;
use serde::{Deserialize, Serialize};

use super::response::BlockView;
use super::{
    ErrorEnvelope, ProviderError, Translated, UsageView, encode_error, finish_reason,
    invalid_json_error, now_secs,
};

/// Translates one streamed answer; create one per call.
#[derive(Debug)]
pub struct StreamTranslator {
    id: String,
    model: String,
    created: u64,
    usage: UsageView,
    /// The first chunk (with `role`) was sent.
    started: bool,
    /// The chunk with `finish_reason` was sent.
    finished: bool,
    /// Tool-use blocks seen: (Anthropic block index, OpenAI tool call
    /// index, whether any arguments were sent).
    tools: Vec<(u64, u32, bool)>,
}

#[derive(Debug, Deserialize)]
struct TypeView<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
}

#[derive(Debug, Deserialize)]
struct MessageStart<'a> {
    #[serde(borrow)]
    message: StartedMessage<'a>,
}

#[derive(Debug, Deserialize)]
struct StartedMessage<'a> {
    #[serde(default, borrow)]
    id: Cow<'a, str>,
    #[serde(default)]
    usage: UsageView,
}

#[derive(Debug, Deserialize)]
struct BlockStart<'a> {
    index: u64,
    #[serde(borrow)]
    content_block: BlockView<'a>,
}

#[derive(Debug, Deserialize)]
struct BlockDelta<'a> {
    index: u64,
    #[serde(borrow)]
    delta: DeltaView<'a>,
}

/// `text_delta`, `input_json_delta`, `thinking_delta`; the others
/// (`signature_delta`, `citations_delta`) have no OpenAI equivalent.
#[derive(Debug, Deserialize)]
struct DeltaView<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    partial_json: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    thinking: Option<Cow<'a, str>>,
}

#[derive(Debug, Deserialize)]
struct BlockStop {
    index: u64,
}

#[derive(Debug, Deserialize)]
struct MessageDelta<'a> {
    #[serde(borrow)]
    delta: StopView<'a>,
    #[serde(default)]
    usage: UsageView,
}

#[derive(Debug, Deserialize)]
struct StopView<'a> {
    #[serde(default, borrow)]
    stop_reason: Option<Cow<'a, str>>,
}

#[derive(Debug, Serialize)]
struct Chunk<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [ChunkChoice<'a>; 1],
}

#[derive(Debug, Serialize)]
struct ChunkChoice<'a> {
    index: u32,
    delta: Delta<'a>,
    finish_reason: Option<&'static str>,
}

#[derive(Debug, Default, Serialize)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<[ToolCallDelta<'a>; 1]>,
}

#[derive(Debug, Serialize)]
struct ToolCallDelta<'a> {
    index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    function: FunctionDelta<'a>,
}

#[derive(Debug, Serialize)]
struct FunctionDelta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    arguments: &'a str,
}

/// The `include_usage` trailer: no choices, just the totals.
#[derive(Debug, Serialize)]
struct UsageChunk<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [(); 0],
    usage: Usage,
}

impl StreamTranslator {
    /// `model` is what the chunks report (Anthropic's events name the
    /// upstream model; the caller picks what the client sees).
    pub fn new(model: &str) -> StreamTranslator {
        StreamTranslator::with_created(model, now_secs())
    }

    fn with_created(model: &str, created: u64) -> StreamTranslator {
        StreamTranslator {
            id: String::new(),
            model: model.to_owned(),
            created,
            usage: UsageView::default(),
            started: false,
            finished: false,
            tools: Vec::new(),
        }
    }

    /// Translates one event. Unknown event types are ignored: Anthropic may
    /// add new ones within an API version.
    pub fn on_event(&mut self, event: &str, data: &str) -> Result<Translated, ProviderError> {
        let mut out = Translated::default();
        // The `event:` name is authoritative; the payload's `type` is a
        // fallback for proxies that drop event names.
        let fallback;
        let kind = if event.is_empty() || event == "message" {
            fallback = serde_json::from_str::<TypeView>(data).map_err(invalid_json_error)?;
            fallback.kind.as_ref()
        } else {
            event
        };
        match kind {
            "message_start" => {
                let start: MessageStart = serde_json::from_str(data).map_err(invalid_json_error)?;
                self.id = start.message.id.into_owned();
                self.usage.update(start.message.usage);
                self.start(&mut out)?;
            }
            "content_block_start" => {
                let start: BlockStart = serde_json::from_str(data).map_err(invalid_json_error)?;
                self.start(&mut out)?;
                self.block_start(start, &mut out)?;
            }
            "content_block_delta" => {
                let delta: BlockDelta = serde_json::from_str(data).map_err(invalid_json_error)?;
                self.start(&mut out)?;
                self.block_delta(delta, &mut out)?;
            }
            "content_block_stop" => {
                let stop: BlockStop = serde_json::from_str(data).map_err(invalid_json_error)?;
                // A tool called without arguments must still get "{}":
                // clients parse the arguments as JSON.
                if let Some(&(_, tool, false)) = self.tools.iter().find(|t| t.0 == stop.index) {
                    out.chunks.push(self.arguments(tool, "{}")?);
                }
            }
            "message_delta" => {
                let delta: MessageDelta = serde_json::from_str(data).map_err(invalid_json_error)?;
                self.usage.update(delta.usage);
                self.start(&mut out)?;
                self.finish(finish_reason(delta.delta.stop_reason.as_deref()), &mut out)?;
            }
            "message_stop" => {
                self.start(&mut out)?;
                self.finish("stop", &mut out)?;
                let usage = UsageChunk {
                    id: &self.id,
                    object: "chat.completion.chunk",
                    created: self.created,
                    model: &self.model,
                    choices: [],
                    usage: self.usage.to_openai(),
                };
                out.chunks.push(encode(&usage)?);
                out.done = true;
            }
            "error" => {
                let error: ErrorEnvelope =
                    serde_json::from_str(data).map_err(invalid_json_error)?;
                return Err(error.error.into_provider_error());
            }
            // `ping` and event types added after this was written.
            _ => {}
        }
        Ok(out)
    }

    /// Sends the role chunk if nothing was sent yet.
    fn start(&mut self, out: &mut Translated) -> Result<(), ProviderError> {
        if !self.started {
            self.started = true;
            let delta = Delta {
                role: Some("assistant"),
                content: Some(""),
                ..Delta::default()
            };
            out.chunks.push(self.chunk(delta, None)?);
        }
        Ok(())
    }

    /// Sends the chunk with `finish_reason`, once.
    fn finish(&mut self, reason: &'static str, out: &mut Translated) -> Result<(), ProviderError> {
        if !self.finished {
            self.finished = true;
            out.chunks.push(self.chunk(Delta::default(), Some(reason))?);
        }
        Ok(())
    }

    fn block_start(
        &mut self,
        start: BlockStart<'_>,
        out: &mut Translated,
    ) -> Result<(), ProviderError> {
        let block = start.content_block;
        match block.kind.as_ref() {
            "tool_use" => {
                let tool = u32::try_from(self.tools.len()).unwrap_or(u32::MAX);
                self.tools.push((start.index, tool, false));
                // Arguments follow as `input_json_delta`s; the block's own
                // `input` is always empty when streaming.
                let call = ToolCallDelta {
                    index: tool,
                    id: Some(block.id.as_deref().unwrap_or("")),
                    kind: Some("function"),
                    function: FunctionDelta {
                        name: Some(block.name.as_deref().unwrap_or("")),
                        arguments: "",
                    },
                };
                let delta = Delta {
                    tool_calls: Some([call]),
                    ..Delta::default()
                };
                out.chunks.push(self.chunk(delta, None)?);
            }
            "text" => self.text(block.text.as_deref(), out)?,
            "thinking" => self.reasoning(block.thinking.as_deref(), out)?,
            _ => {}
        }
        Ok(())
    }

    fn block_delta(
        &mut self,
        event: BlockDelta<'_>,
        out: &mut Translated,
    ) -> Result<(), ProviderError> {
        let delta = event.delta;
        match delta.kind.as_ref() {
            "text_delta" => self.text(delta.text.as_deref(), out)?,
            "thinking_delta" => self.reasoning(delta.thinking.as_deref(), out)?,
            "input_json_delta" => {
                let partial = delta.partial_json.as_deref().unwrap_or("");
                let tool = self.tools.iter_mut().find(|t| t.0 == event.index);
                if let (false, Some(tool)) = (partial.is_empty(), tool) {
                    tool.2 = true;
                    let index = tool.1;
                    out.chunks.push(self.arguments(index, partial)?);
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn text(&self, text: Option<&str>, out: &mut Translated) -> Result<(), ProviderError> {
        if let Some(text) = text.filter(|text| !text.is_empty()) {
            let delta = Delta {
                content: Some(text),
                ..Delta::default()
            };
            out.chunks.push(self.chunk(delta, None)?);
        }
        Ok(())
    }

    fn reasoning(&self, text: Option<&str>, out: &mut Translated) -> Result<(), ProviderError> {
        if let Some(text) = text.filter(|text| !text.is_empty()) {
            let delta = Delta {
                reasoning_content: Some(text),
                ..Delta::default()
            };
            out.chunks.push(self.chunk(delta, None)?);
        }
        Ok(())
    }

    fn arguments(&self, tool: u32, arguments: &str) -> Result<Bytes, ProviderError> {
        let call = ToolCallDelta {
            index: tool,
            id: None,
            kind: None,
            function: FunctionDelta {
                name: None,
                arguments,
            },
        };
        let delta = Delta {
            tool_calls: Some([call]),
            ..Delta::default()
        };
        self.chunk(delta, None)
    }

    fn chunk(
        &self,
        delta: Delta<'_>,
        finish_reason: Option<&'static str>,
    ) -> Result<Bytes, ProviderError> {
        encode(&Chunk {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model,
            choices: [ChunkChoice {
                index: 0,
                delta,
                finish_reason,
            }],
        })
    }
}

fn encode(value: &impl Serialize) -> Result<Bytes, ProviderError> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(encode_error)
}

#[cfg(test)]
mod tests;
