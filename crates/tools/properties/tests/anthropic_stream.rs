//! Property tests of the Anthropic stream translation: what the client
//! reads as OpenAI chunks carries exactly the text, reasoning, tool calls
//! and usage the Anthropic events did, however the bytes arrived.

use llmgw_properties::anthropic_stream;
use llmgw_properties::sse::read_events;
use proptest::prelude::*;
use serde_json::{Value, json};

#[derive(Debug, Clone)]
enum Block {
    Text(Vec<String>),
    Thinking(Vec<String>),
    Tool { name: String, args: Vec<String> },
}

fn block() -> impl Strategy<Value = Block> {
    let pieces = || prop::collection::vec("\\PC{0,10}|[\"\\\\\n{}]{0,3}", 0..5);
    prop_oneof![
        pieces().prop_map(Block::Text),
        pieces().prop_map(Block::Thinking),
        ("[a-z_]{1,12}", pieces()).prop_map(|(name, args)| Block::Tool { name, args }),
    ]
}

#[derive(Debug, Clone, Copy)]
struct Usage {
    input: u32,
    cache_read: u32,
    cache_write: u32,
    output_start: u32,
    output: u32,
}

fn usage() -> impl Strategy<Value = Usage> {
    (
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        0..5u32,
        any::<u32>(),
    )
        .prop_map(
            |(input, cache_read, cache_write, output_start, output)| Usage {
                input,
                cache_read,
                cache_write,
                output_start,
                output,
            },
        )
}

/// The events Anthropic streams for `blocks`, as an SSE body.
fn body(blocks: &[Block], usage: Usage, stop: &str, named: bool) -> Vec<u8> {
    let mut events = vec![json!({"type": "message_start", "message": {
        "id": "msg_1", "type": "message", "role": "assistant", "content": [],
        "model": "claude-sonnet-4-5", "stop_reason": null,
        "usage": {"input_tokens": usage.input, "cache_read_input_tokens": usage.cache_read,
            "cache_creation_input_tokens": usage.cache_write, "output_tokens": usage.output_start}}})];
    events.push(json!({"type": "ping"}));
    for (index, block) in blocks.iter().enumerate() {
        let (start, deltas) = match block {
            Block::Text(pieces) => (
                json!({"type": "text", "text": ""}),
                pieces
                    .iter()
                    .map(|text| json!({"type": "text_delta", "text": text}))
                    .collect::<Vec<_>>(),
            ),
            Block::Thinking(pieces) => (
                json!({"type": "thinking", "thinking": ""}),
                pieces
                    .iter()
                    .map(|text| json!({"type": "thinking_delta", "thinking": text}))
                    .collect(),
            ),
            Block::Tool { name, args } => (
                json!({"type": "tool_use", "id": format!("toolu_{index}"), "name": name, "input": {}}),
                args.iter()
                    .map(|part| json!({"type": "input_json_delta", "partial_json": part}))
                    .collect(),
            ),
        };
        events.push(json!({"type": "content_block_start", "index": index, "content_block": start}));
        for delta in deltas {
            events.push(json!({"type": "content_block_delta", "index": index, "delta": delta}));
        }
        events.push(json!({"type": "content_block_stop", "index": index}));
    }
    events.push(
        json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null},
        "usage": {"output_tokens": usage.output}}),
    );
    events.push(json!({"type": "message_stop"}));
    let mut text = String::new();
    for event in events {
        if named {
            text.push_str(&format!(
                "event: {}\n",
                event["type"].as_str().expect("type")
            ));
        }
        text.push_str(&format!("data: {event}\n\n"));
    }
    text.into_bytes()
}

fn cut<'a>(bytes: &'a [u8], points: &[usize]) -> Vec<&'a [u8]> {
    let mut points: Vec<usize> = points.iter().map(|p| p % (bytes.len() + 1)).collect();
    points.sort_unstable();
    points.dedup();
    let mut chunks = Vec::new();
    let mut start = 0;
    for point in points.into_iter().chain([bytes.len()]) {
        chunks.push(&bytes[start..point]);
        start = point;
    }
    chunks
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn translation_keeps_text_tool_arguments_and_usage(
        blocks in prop::collection::vec(block(), 0..6),
        usage in usage(),
        stop in prop::sample::select(vec!["end_turn", "max_tokens", "tool_use", "stop_sequence", "refusal"]),
        named in any::<bool>(),
        points in prop::collection::vec(any::<usize>(), 0..10),
    ) {
        let bytes = body(&blocks, usage, stop, named);
        let (events, failed) = read_events(&cut(&bytes, &points));
        prop_assert!(!failed);
        let (chunks, done) = anthropic_stream::translate(&events);
        prop_assert!(done);

        let mut content = String::new();
        let mut reasoning = String::new();
        // OpenAI tool call index -> (name, arguments).
        let mut tools: Vec<(String, String)> = Vec::new();
        let mut finish = Vec::new();
        let mut usages = Vec::new();
        for chunk in &chunks {
            let chunk = serde_json::to_value(chunk).expect("value");
            if let Some(usage) = chunk.get("usage").filter(|usage| !usage.is_null()) {
                usages.push(usage.clone());
            }
            for choice in chunk["choices"].as_array().expect("choices") {
                if let Some(reason) = choice["finish_reason"].as_str() {
                    finish.push(reason.to_owned());
                }
                let delta = &choice["delta"];
                content.push_str(delta["content"].as_str().unwrap_or(""));
                reasoning.push_str(delta["reasoning_content"].as_str().unwrap_or(""));
                for call in delta["tool_calls"].as_array().into_iter().flatten() {
                    let index = call["index"].as_u64().expect("index") as usize;
                    if index == tools.len() {
                        tools.push((String::new(), String::new()));
                    }
                    let tool = &mut tools[index];
                    tool.0.push_str(call["function"]["name"].as_str().unwrap_or(""));
                    tool.1.push_str(call["function"]["arguments"].as_str().unwrap_or(""));
                }
            }
        }
        let texts = |pick: fn(&Block) -> Option<&Vec<String>>| -> String {
            blocks.iter().filter_map(pick).flatten().map(String::as_str).collect()
        };
        prop_assert_eq!(content, texts(|b| match b { Block::Text(p) => Some(p), _ => None }));
        prop_assert_eq!(reasoning, texts(|b| match b { Block::Thinking(p) => Some(p), _ => None }));
        let expected_tools: Vec<(String, String)> = blocks
            .iter()
            .filter_map(|block| match block {
                Block::Tool { name, args } => {
                    let args = args.concat();
                    Some((name.clone(), if args.is_empty() { "{}".to_owned() } else { args }))
                }
                _ => None,
            })
            .collect();
        prop_assert_eq!(tools, expected_tools);
        let expected_finish = match stop {
            "max_tokens" => "length",
            "tool_use" => "tool_calls",
            "refusal" => "content_filter",
            _ => "stop",
        };
        prop_assert_eq!(finish, vec![expected_finish.to_owned()]);
        prop_assert_eq!(usages.len(), 1);
        let prompt = u64::from(usage.input) + u64::from(usage.cache_read) + u64::from(usage.cache_write);
        prop_assert_eq!(&usages[0]["prompt_tokens"], &json!(prompt));
        prop_assert_eq!(&usages[0]["completion_tokens"], &json!(usage.output));
        prop_assert_eq!(&usages[0]["total_tokens"], &json!(prompt + u64::from(usage.output)));
        prop_assert_eq!(&usages[0]["prompt_tokens_details"]["cached_tokens"], &json!(usage.cache_read));
    }

    /// Arbitrary bytes, streamed or as a whole response, never panic and
    /// only ever become OpenAI chunks or an upstream error.
    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..512)) {
        anthropic_stream::check(&data);
    }

    /// Events with the right names and arbitrary JSON payloads.
    #[test]
    fn arbitrary_event_payloads(
        events in prop::collection::vec(
            (
                prop::sample::select(vec!["message_start", "content_block_start", "content_block_delta",
                    "content_block_stop", "message_delta", "message_stop", "error", "ping", "message", ""]),
                json_value(),
            ),
            0..12,
        ),
    ) {
        let mut text = String::new();
        for (name, payload) in events {
            if !name.is_empty() {
                text.push_str(&format!("event: {name}\n"));
            }
            text.push_str(&format!("data: {payload}\n\n"));
        }
        let mut data = vec![0, 0, 0];
        data.extend(text.into_bytes());
        anthropic_stream::check(&data);
    }
}

/// JSON values shaped like Anthropic's events, with wrong types mixed in.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        prop::sample::select(vec![
            "text",
            "tool_use",
            "thinking",
            "text_delta",
            "input_json_delta",
            "thinking_delta",
            "end_turn",
            "tool_use",
            "overloaded_error",
            "x"
        ])
        .prop_map(|s| json!(s)),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop::collection::vec(
            (
                prop::sample::select(vec![
                    "type",
                    "index",
                    "delta",
                    "content_block",
                    "message",
                    "usage",
                    "text",
                    "partial_json",
                    "thinking",
                    "id",
                    "name",
                    "input",
                    "stop_reason",
                    "error",
                    "message",
                    "input_tokens",
                    "output_tokens",
                    "cache_read_input_tokens",
                ]),
                inner,
            ),
            0..6,
        )
        .prop_map(|fields| {
            Value::Object(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
        })
    })
}
