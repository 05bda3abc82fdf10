//! OpenAI `chat.completion.chunk`s -> Anthropic's streamed event sequence.
//!
//! Anthropic streams typed content blocks (thinking, text, tool use), each
//! opened, filled by deltas and closed; OpenAI streams deltas of fields
//! that may come in any order. The encoder opens a block when a delta of
//! another kind arrives (closing the open one), so
//!
//! `message_start`, `ping`, (`content_block_start`, `content_block_delta`*,
//! `content_block_stop`)*, `message_delta`, `message_stop`
//!
//! comes out whatever the upstream's chunking. `message_delta` carries the
//! usage the attempt was billed (see [`MessagesEncoder::finish`]): OpenAI
//! reports usage only at the end, so `message_start` says 0 input tokens.

use bytes::Bytes;
use llmgw_proto::router_v1::Usage;
use serde::Serialize;

use super::{MessageUsage, frame, stop_reason};
use crate::provider::chat_chunk::ChunkView;

/// Re-encodes one streamed answer; create one per upstream attempt.
#[derive(Debug, Default)]
pub struct MessagesEncoder {
    id: String,
    model: String,
    /// `message_start` was sent.
    started: bool,
    /// The block being filled, if any.
    open: Option<Open>,
    /// Index of the next block.
    next_index: u32,
    /// Tool calls seen: (OpenAI tool call index, block index, call id).
    tools: Vec<(u32, u32, String)>,
    /// From the finish reason, once it came.
    stop_reason: Option<&'static str>,
    /// `message_stop` was sent.
    stopped: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Open {
    index: u32,
    kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Thinking,
    Text,
    /// A tool call (its OpenAI index).
    Tool(u32),
}

#[derive(Serialize)]
struct MessageStart<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    message: StartedMessage<'a>,
}

#[derive(Serialize)]
struct StartedMessage<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    model: &'a str,
    content: [(); 0],
    stop_reason: Option<()>,
    stop_sequence: Option<()>,
    usage: MessageUsage,
}

#[derive(Serialize)]
struct BlockStart<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    index: u32,
    content_block: StartedBlock<'a>,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum StartedBlock<'a> {
    Thinking {
        thinking: &'static str,
        signature: &'static str,
    },
    Text {
        text: &'static str,
    },
    ToolUse {
        id: &'a str,
        name: &'a str,
        input: Empty,
    },
}

/// `{}`.
#[derive(Serialize)]
struct Empty {}

#[derive(Serialize)]
struct BlockDelta<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    index: u32,
    delta: Delta<'a>,
}

/// A block's delta, by its Anthropic `type`.
#[derive(Serialize)]
#[serde(tag = "type")]
enum Delta<'a> {
    #[serde(rename = "thinking_delta")]
    Thinking { thinking: &'a str },
    #[serde(rename = "text_delta")]
    Text { text: &'a str },
    #[serde(rename = "input_json_delta")]
    InputJson { partial_json: &'a str },
}

#[derive(Serialize)]
struct BlockStop {
    #[serde(rename = "type")]
    kind: &'static str,
    index: u32,
}

#[derive(Serialize)]
struct MessageDelta {
    #[serde(rename = "type")]
    kind: &'static str,
    delta: StopDelta,
    usage: MessageUsage,
}

#[derive(Serialize)]
struct StopDelta {
    stop_reason: &'static str,
    stop_sequence: Option<()>,
}

const PING: &[u8] = br#"{"type":"ping"}"#;
const MESSAGE_STOP: &[u8] = br#"{"type":"message_stop"}"#;

impl MessagesEncoder {
    pub fn new() -> MessagesEncoder {
        MessagesEncoder::default()
    }

    /// The events for one OpenAI chunk (JSON), appended to `out`. Only the
    /// first choice is read: Messages has no `n`. A chunk that does not
    /// parse (never expected: the relay parsed it already) adds nothing.
    pub fn on_chunk(&mut self, chunk: &[u8], out: &mut Vec<Bytes>) {
        let Ok(view) = serde_json::from_slice::<ChunkView>(chunk) else {
            tracing::debug!("a chunk to re-encode did not parse; skipped");
            return;
        };
        if !self.started {
            self.id = view.id.to_string();
            self.model = view.model.to_string();
            self.start(out);
        }
        let Some(choice) = view.choices.iter().find(|choice| choice.index == 0) else {
            return;
        };
        if let Some(delta) = choice.delta.as_ref().or(choice.message.as_ref()) {
            if let Some(thinking) = delta.reasoning_content.as_deref().filter(|t| !t.is_empty()) {
                self.open_kind(Kind::Thinking, None, out);
                self.delta(Delta::Thinking { thinking }, out);
            }
            if let Some(text) = delta.content.as_deref().filter(|t| !t.is_empty()) {
                self.open_kind(Kind::Text, None, out);
                self.delta(Delta::Text { text }, out);
            }
            for call in delta.tool_calls.iter().flatten() {
                let function = call.function.as_ref();
                let known = self.tools.iter().find(|(tool, ..)| *tool == call.index);
                let index = match known {
                    // A later delta of a call already open, or (rarely,
                    // interleaved) of one already closed: its own block.
                    // Some servers repeat the id in every delta.
                    Some((_, index, id)) if call.id.as_deref().is_none_or(|new| new == id) => {
                        *index
                    }
                    _ => {
                        let id = call
                            .id
                            .as_deref()
                            .map_or_else(|| format!("call_{}", call.index), str::to_owned);
                        let name = function.and_then(|f| f.name.as_deref()).unwrap_or("");
                        self.open_kind(Kind::Tool(call.index), Some((&id, name)), out);
                        self.next_index - 1
                    }
                };
                let arguments = function.and_then(|f| f.arguments.as_deref());
                if let Some(partial_json) = arguments.filter(|a| !a.is_empty()) {
                    let event = BlockDelta {
                        kind: "content_block_delta",
                        index,
                        delta: Delta::InputJson { partial_json },
                    };
                    push(out, "content_block_delta", &event);
                }
            }
        }
        if let Some(reason) = &choice.finish_reason {
            self.close(out);
            self.stop_reason = Some(stop_reason(Some(reason)));
        }
    }

    /// The end of the answer: closes what is open, then `message_delta`
    /// (with `usage`, the attempt's billed usage) and `message_stop`.
    pub fn finish(&mut self, usage: &Usage, out: &mut Vec<Bytes>) {
        if self.stopped {
            return;
        }
        self.start(out);
        self.close(out);
        let delta = MessageDelta {
            kind: "message_delta",
            delta: StopDelta {
                stop_reason: self.stop_reason.unwrap_or("end_turn"),
                stop_sequence: None,
            },
            usage: MessageUsage::of_usage(usage),
        };
        push(out, "message_delta", &delta);
        out.push(frame("message_stop", MESSAGE_STOP));
        self.stopped = true;
    }

    fn start(&mut self, out: &mut Vec<Bytes>) {
        if self.started {
            return;
        }
        self.started = true;
        let start = MessageStart {
            kind: "message_start",
            message: StartedMessage {
                id: &self.id,
                kind: "message",
                role: "assistant",
                model: &self.model,
                content: [],
                stop_reason: None,
                stop_sequence: None,
                usage: MessageUsage::default(),
            },
        };
        push(out, "message_start", &start);
        out.push(frame("ping", PING));
    }

    /// Makes a block of `kind` the open one (a tool call always opens a
    /// new block: `tool` is its id and name).
    fn open_kind(&mut self, kind: Kind, tool: Option<(&str, &str)>, out: &mut Vec<Bytes>) {
        if tool.is_none() && self.open.is_some_and(|open| open.kind == kind) {
            return;
        }
        self.close(out);
        let index = self.next_index;
        self.next_index += 1;
        let content_block = match (kind, tool) {
            (Kind::Thinking, _) => StartedBlock::Thinking {
                thinking: "",
                signature: "",
            },
            (Kind::Text, _) => StartedBlock::Text { text: "" },
            (Kind::Tool(call), tool) => {
                let (id, name) = tool.unwrap_or(("", ""));
                self.tools.retain(|(known, ..)| *known != call);
                self.tools.push((call, index, id.to_owned()));
                StartedBlock::ToolUse {
                    id,
                    name,
                    input: Empty {},
                }
            }
        };
        let start = BlockStart {
            kind: "content_block_start",
            index,
            content_block,
        };
        push(out, "content_block_start", &start);
        self.open = Some(Open { index, kind });
    }

    fn delta(&mut self, delta: Delta<'_>, out: &mut Vec<Bytes>) {
        let Some(open) = self.open else {
            return;
        };
        let event = BlockDelta {
            kind: "content_block_delta",
            index: open.index,
            delta,
        };
        push(out, "content_block_delta", &event);
    }

    fn close(&mut self, out: &mut Vec<Bytes>) {
        if let Some(open) = self.open.take() {
            let stop = BlockStop {
                kind: "content_block_stop",
                index: open.index,
            };
            push(out, "content_block_stop", &stop);
        }
    }
}

fn push(out: &mut Vec<Bytes>, kind: &str, event: &impl Serialize) {
    // Serialising these structs (strings and numbers) cannot fail.
    if let Ok(data) = serde_json::to_vec(event) {
        out.push(frame(kind, &data));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn events(frames: &[Bytes]) -> Vec<(String, Value)> {
        frames
            .iter()
            .map(|frame| {
                let text = std::str::from_utf8(frame).expect("utf-8");
                let (event, data) = text
                    .strip_prefix("event: ")
                    .and_then(|rest| rest.strip_suffix("\n\n"))
                    .and_then(|rest| rest.split_once("\ndata: "))
                    .expect("one framed event");
                let data: Value = serde_json::from_str(data).expect("json");
                assert_eq!(data["type"], event, "{text}");
                (event.to_owned(), data)
            })
            .collect()
    }

    fn chunk(delta: Value, finish: Option<&str>) -> Vec<u8> {
        json!({"id": "chatcmpl-9", "object": "chat.completion.chunk", "created": 1, "model": "gpt-up",
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        .to_string()
        .into_bytes()
    }

    #[test]
    fn reasoning_text_and_two_tool_calls() {
        let mut encoder = MessagesEncoder::new();
        let mut out = Vec::new();
        for (delta, finish) in [
            (json!({"role": "assistant", "content": ""}), None),
            (json!({"reasoning_content": "Think"}), None),
            (json!({"reasoning_content": "ing."}), None),
            (json!({"content": "Hi"}), None),
            (
                json!({"tool_calls": [{"index": 0, "id": "call_a", "type": "function",
                    "function": {"name": "f", "arguments": ""}}]}),
                None,
            ),
            (
                json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"x\":"}}]}),
                None,
            ),
            (
                json!({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}),
                None,
            ),
            (
                json!({"tool_calls": [{"index": 1, "id": "call_b", "type": "function",
                    "function": {"name": "g", "arguments": "{}"}}]}),
                None,
            ),
            (json!({}), Some("tool_calls")),
        ] {
            encoder.on_chunk(&chunk(delta, finish), &mut out);
        }
        let usage = Usage {
            prompt_tokens: 20,
            cached_tokens: 5,
            completion_tokens: 9,
            ..Usage::default()
        };
        encoder.finish(&usage, &mut out);
        encoder.finish(&usage, &mut out); // once only
        let events = events(&out);
        let kinds: Vec<&str> = events.iter().map(|(kind, _)| kind.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "message_start",
                "ping",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop",
            ]
        );
        assert_eq!(events[0].1["message"]["id"], "chatcmpl-9");
        assert_eq!(events[0].1["message"]["model"], "gpt-up");
        assert_eq!(
            events[2].1["content_block"],
            json!({"type": "thinking", "thinking": "", "signature": ""})
        );
        assert_eq!(
            events[9].1,
            json!({"type": "content_block_start", "index": 2,
                   "content_block": {"type": "tool_use", "id": "call_a", "name": "f", "input": {}}})
        );
        assert_eq!(
            events[11].1["delta"],
            json!({"type": "input_json_delta", "partial_json": "1}"})
        );
        assert_eq!(events[13].1["content_block"]["id"], "call_b");
        assert_eq!(events[13].1["index"], 3);
        assert_eq!(
            events[16].1,
            json!({"type": "message_delta",
                   "delta": {"stop_reason": "tool_use", "stop_sequence": null},
                   "usage": {"input_tokens": 15, "cache_creation_input_tokens": 0,
                             "cache_read_input_tokens": 5, "output_tokens": 9}})
        );
    }

    #[test]
    fn an_empty_answer_is_still_a_whole_message() {
        let mut encoder = MessagesEncoder::new();
        let mut out = Vec::new();
        encoder.finish(&Usage::default(), &mut out);
        let kinds: Vec<String> = events(&out).into_iter().map(|(kind, _)| kind).collect();
        assert_eq!(
            kinds,
            ["message_start", "ping", "message_delta", "message_stop"]
        );
    }
}
