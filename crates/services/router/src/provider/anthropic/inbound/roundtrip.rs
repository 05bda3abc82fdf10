//! Property tests: any Anthropic answer (streams shaped as Anthropic and the
//! mock upstream send them: thinking, text and tool-use blocks in any order,
//! text in any pieces, prompt-cache usage), passed through to a Messages
//! client, or translated to OpenAI's form (as for the content policy and
//! for chat clients) and re-encoded, gives the client the same text,
//! thinking, tool calls and usage. The relay's own steps are replayed: the
//! tally reads each OpenAI chunk, the usage-only chunk is not forwarded,
//! and `message_delta` carries the tally's usage.

use bytes::Bytes;
use proptest::prelude::*;
use serde_json::{Value, json};

use super::{MessagesEncoder, completion_to_message};
use crate::provider::anthropic::native::NativeStream;
use crate::provider::anthropic::{StreamTranslator, completion_to_openai};
use crate::provider::chat_chunk::ChunkView;
use crate::relay::tally::Tally;

#[derive(Debug, Clone)]
enum GenBlock {
    Thinking(Vec<String>),
    Text(Vec<String>),
    /// A tool call: its input object, streamed in pieces cut at `cuts`.
    Tool {
        name: String,
        input: Value,
        cuts: Vec<usize>,
    },
}

#[derive(Debug, Clone)]
struct GenMessage {
    blocks: Vec<GenBlock>,
    stop_reason: &'static str,
    input: u64,
    cache_read: u64,
    cache_write: u64,
    output: u64,
}

/// What a client accumulates from a Messages answer.
#[derive(Debug, Default, PartialEq)]
struct Seen {
    text: String,
    thinking: String,
    /// (id, name, input)
    tools: Vec<(String, String, Value)>,
    usage: [u64; 4],
    stop_reason: String,
}

fn piece() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 .,\"\\\\\n\u{e9}\u{4e2d}\u{6587}]{0,6}"
}

fn block() -> impl Strategy<Value = GenBlock> {
    prop_oneof![
        prop::collection::vec(piece(), 1..4).prop_map(GenBlock::Thinking),
        prop::collection::vec(piece(), 1..6).prop_map(GenBlock::Text),
        (
            "[a-z_]{1,8}",
            prop::collection::btree_map("[a-z]{1,5}", piece(), 0..3),
            prop::collection::vec(0usize..40, 0..4),
        )
            .prop_map(|(name, fields, cuts)| GenBlock::Tool {
                name,
                input: json!(fields),
                cuts,
            }),
    ]
}

fn message() -> impl Strategy<Value = GenMessage> {
    (
        prop::collection::vec(block(), 0..5),
        prop::sample::select(vec!["end_turn", "max_tokens", "tool_use", "refusal"]),
        0u64..100_000,
        0u64..100_000,
        0u64..100_000,
        0u64..10_000,
    )
        .prop_map(
            |(blocks, stop_reason, input, cache_read, cache_write, output)| GenMessage {
                blocks,
                stop_reason,
                input,
                cache_read,
                cache_write,
                output,
            },
        )
}

/// `text` in pieces cut at `cuts` (byte positions, moved to char
/// boundaries).
fn cut(text: &str, cuts: &[usize]) -> Vec<String> {
    let mut at: Vec<usize> = cuts
        .iter()
        .map(|&c| {
            let mut c = c.min(text.len());
            while !text.is_char_boundary(c) {
                c -= 1;
            }
            c
        })
        .collect();
    at.sort_unstable();
    at.dedup();
    let mut pieces = Vec::new();
    let mut start = 0;
    for c in at.into_iter().chain([text.len()]) {
        pieces.push(text[start..c].to_owned());
        start = c;
    }
    pieces
}

/// The stream Anthropic would send: `(event, data)` pairs.
fn events(message: &GenMessage) -> Vec<(String, String)> {
    let mut events = vec![(
        "message_start",
        json!({"type": "message_start", "message": {"id": "msg_1", "type": "message",
            "role": "assistant", "model": "claude", "content": [], "stop_reason": null,
            "usage": {"input_tokens": message.input, "cache_read_input_tokens": message.cache_read,
                      "cache_creation_input_tokens": message.cache_write, "output_tokens": 1}}}),
    )];
    events.push(("ping", json!({"type": "ping"})));
    for (index, block) in message.blocks.iter().enumerate() {
        let (start, deltas) = match block {
            GenBlock::Thinking(pieces) => (
                json!({"type": "thinking", "thinking": "", "signature": ""}),
                pieces
                    .iter()
                    .map(|p| json!({"type": "thinking_delta", "thinking": p}))
                    .chain([json!({"type": "signature_delta", "signature": "c2ln"})])
                    .collect::<Vec<_>>(),
            ),
            GenBlock::Text(pieces) => (
                json!({"type": "text", "text": ""}),
                pieces
                    .iter()
                    .map(|p| json!({"type": "text_delta", "text": p}))
                    .collect(),
            ),
            GenBlock::Tool { name, input, cuts } => {
                let text = if input.as_object().is_some_and(|o| o.is_empty()) {
                    String::new()
                } else {
                    input.to_string()
                };
                (
                    json!({"type": "tool_use", "id": format!("toolu_{index}"), "name": name, "input": {}}),
                    cut(&text, cuts)
                        .into_iter()
                        .map(|p| json!({"type": "input_json_delta", "partial_json": p}))
                        .collect(),
                )
            }
        };
        events.push((
            "content_block_start",
            json!({"type": "content_block_start", "index": index, "content_block": start}),
        ));
        for delta in deltas {
            events.push((
                "content_block_delta",
                json!({"type": "content_block_delta", "index": index, "delta": delta}),
            ));
        }
        events.push((
            "content_block_stop",
            json!({"type": "content_block_stop", "index": index}),
        ));
    }
    events.push((
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": message.stop_reason, "stop_sequence": null},
               "usage": {"output_tokens": message.output}}),
    ));
    events.push(("message_stop", json!({"type": "message_stop"})));
    events
        .into_iter()
        .map(|(event, data)| (event.to_owned(), data.to_string()))
        .collect()
}

/// What an Anthropic SDK accumulates from these events (in its way: blocks
/// by index, usage fields replaced as they come).
fn accumulate(events: &[(String, Value)]) -> Seen {
    #[derive(Default)]
    struct Block {
        kind: String,
        text: String,
        id: String,
        name: String,
        json: String,
    }
    let mut blocks: Vec<Block> = Vec::new();
    let mut seen = Seen::default();
    let mut usage = |u: &Value| {
        for (i, field) in [
            "input_tokens",
            "cache_read_input_tokens",
            "cache_creation_input_tokens",
            "output_tokens",
        ]
        .iter()
        .enumerate()
        {
            if let Some(value) = u.get(field).and_then(Value::as_u64) {
                seen.usage[i] = value;
            }
        }
    };
    for (event, data) in events {
        assert_eq!(data["type"], event.as_str(), "event name and type agree");
        match event.as_str() {
            "message_start" => usage(&data["message"]["usage"]),
            "content_block_start" => {
                let index = data["index"].as_u64().expect("index") as usize;
                assert_eq!(index, blocks.len(), "blocks open in order");
                let block = &data["content_block"];
                blocks.push(Block {
                    kind: block["type"].as_str().unwrap_or("").to_owned(),
                    id: block["id"].as_str().unwrap_or("").to_owned(),
                    name: block["name"].as_str().unwrap_or("").to_owned(),
                    ..Block::default()
                });
            }
            "content_block_delta" => {
                let index = data["index"].as_u64().expect("index") as usize;
                let block = &mut blocks[index];
                let delta = &data["delta"];
                for field in ["text", "thinking"] {
                    if let Some(text) = delta[field].as_str() {
                        block.text.push_str(text);
                    }
                }
                if let Some(json) = delta["partial_json"].as_str() {
                    block.json.push_str(json);
                }
            }
            "message_delta" => {
                usage(&data["usage"]);
                seen.stop_reason = data["delta"]["stop_reason"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned();
            }
            _ => {}
        }
    }
    for block in blocks {
        match block.kind.as_str() {
            "text" => seen.text.push_str(&block.text),
            "thinking" => seen.thinking.push_str(&block.text),
            "tool_use" => {
                let input = if block.json.is_empty() {
                    json!({})
                } else {
                    serde_json::from_str(&block.json).expect("tool input is JSON")
                };
                seen.tools.push((block.id, block.name, input));
            }
            other => panic!("unexpected block type {other}"),
        }
    }
    seen
}

fn parse(events: &[(String, String)]) -> Vec<(String, Value)> {
    events
        .iter()
        .map(|(event, data)| (event.clone(), serde_json::from_str(data).expect("json")))
        .collect()
}

/// Framed SSE events back into (event, data).
fn unframe(frames: &[Bytes]) -> Vec<(String, Value)> {
    frames
        .iter()
        .map(|frame| {
            let text = std::str::from_utf8(frame).expect("utf-8");
            let (event, data) = text
                .strip_prefix("event: ")
                .and_then(|rest| rest.strip_suffix("\n\n"))
                .and_then(|rest| rest.split_once("\ndata: "))
                .expect("one framed event");
            (event.to_owned(), serde_json::from_str(data).expect("json"))
        })
        .collect()
}

fn passed_through(events: &[(String, String)]) -> (Vec<Bytes>, Tally) {
    let mut native = NativeStream::new();
    let mut tally = Tally::default();
    let mut frames = Vec::new();
    for (event, data) in events {
        let seen = native
            .on_event(event, data, tally.generated_mut())
            .expect("reads");
        if let Some(usage) = seen.usage {
            tally.report(usage);
        }
        frames.push(seen.frame);
    }
    (frames, tally)
}

fn round_trip(events: &[(String, String)]) -> Vec<Bytes> {
    let mut translator = StreamTranslator::new("claude");
    let mut tally = Tally::default();
    let mut encoder = MessagesEncoder::new();
    let mut frames = Vec::new();
    for (event, data) in events {
        let translated = translator.on_event(event, data).expect("translates");
        for chunk in translated.chunks {
            let view: ChunkView = serde_json::from_slice(&chunk).expect("chunk");
            tally.observe(&view);
            // The usage-only chunk is not forwarded to a Messages client.
            if view.choices.is_empty() && view.usage.is_some() {
                continue;
            }
            encoder.on_chunk(&chunk, &mut frames);
        }
    }
    encoder.finish(&tally.reported().expect("usage reported"), &mut frames);
    frames
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_stream_passed_through_or_round_tripped_says_the_same(message in message()) {
        let events = events(&message);
        let sent = accumulate(&parse(&events));
        prop_assert_eq!(
            sent.usage,
            [message.input, message.cache_read, message.cache_write, message.output]
        );

        let (frames, tally) = passed_through(&events);
        prop_assert_eq!(&accumulate(&unframe(&frames)), &sent);
        let usage = tally.reported().expect("usage");
        prop_assert_eq!(
            (usage.prompt_tokens, usage.cached_tokens, usage.cache_creation_tokens, usage.completion_tokens),
            (message.input + message.cache_read + message.cache_write, message.cache_read,
             message.cache_write, message.output)
        );

        let back = accumulate(&unframe(&round_trip(&events)));
        prop_assert_eq!(&back.text, &sent.text);
        prop_assert_eq!(&back.thinking, &sent.thinking);
        prop_assert_eq!(&back.tools, &sent.tools);
        prop_assert_eq!(back.usage, sent.usage);
        prop_assert_eq!(&back.stop_reason, &sent.stop_reason);
    }

    #[test]
    fn any_whole_message_round_trips(message in message()) {
        let content: Vec<Value> = message
            .blocks
            .iter()
            .enumerate()
            .map(|(i, block)| match block {
                GenBlock::Thinking(pieces) => json!({"type": "thinking", "thinking": pieces.concat(), "signature": "c2ln"}),
                GenBlock::Text(pieces) => json!({"type": "text", "text": pieces.concat()}),
                GenBlock::Tool { name, input, .. } => json!({"type": "tool_use", "id": format!("toolu_{i}"), "name": name, "input": input}),
            })
            .collect();
        let body = json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude",
            "content": content, "stop_reason": message.stop_reason, "stop_sequence": null,
            "usage": {"input_tokens": message.input, "cache_read_input_tokens": message.cache_read,
                      "cache_creation_input_tokens": message.cache_write, "output_tokens": message.output}});
        let openai = completion_to_openai(body.to_string().as_bytes(), "claude").expect("to OpenAI");
        let back: Value = serde_json::from_slice(&completion_to_message(&openai).expect("back")).expect("json");
        let text = |value: &Value, kind: &str, field: &str| -> String {
            value["content"].as_array().into_iter().flatten()
                .filter(|b| b["type"] == kind)
                .filter_map(|b| b[field].as_str())
                .collect()
        };
        prop_assert_eq!(text(&back, "text", "text"), text(&body, "text", "text"));
        prop_assert_eq!(text(&back, "thinking", "thinking"), text(&body, "thinking", "thinking"));
        let tools = |value: &Value| -> Vec<Value> {
            value["content"].as_array().into_iter().flatten()
                .filter(|b| b["type"] == "tool_use")
                .map(|b| json!([b["id"], b["name"], b["input"]]))
                .collect()
        };
        prop_assert_eq!(tools(&back), tools(&body));
        prop_assert_eq!(&back["usage"], &body["usage"]);
        prop_assert_eq!(&back["stop_reason"], &body["stop_reason"]);
    }
}
