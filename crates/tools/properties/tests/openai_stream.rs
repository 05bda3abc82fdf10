//! Property tests of the OpenAI upstream stream as the relay reads it.

use llmgw_properties::openai_stream;
use llmgw_properties::sse::read_events;
use proptest::prelude::*;
use serde_json::{Value, json};

fn chunk(index: usize, content: &str) -> Value {
    json!({
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000u64,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": null}],
        "n": index,
    })
}

/// An SSE body of `contents` as chunks: each chunk's JSON on one `data:`
/// line or pretty-printed over several, LF or CRLF line ends, keep-alive
/// comments between events, `[DONE]` at the end.
fn body(contents: &[String], multiline: &[bool], crlf: bool, comments: bool) -> Vec<u8> {
    let eol = if crlf { "\r\n" } else { "\n" };
    let mut text = String::new();
    for (index, content) in contents.iter().enumerate() {
        if comments {
            text.push_str(&format!(": keep-alive{eol}{eol}"));
        }
        let value = chunk(index, content);
        let json = if multiline.get(index).copied().unwrap_or(false) {
            serde_json::to_string_pretty(&value).expect("json")
        } else {
            value.to_string()
        };
        for line in json.lines() {
            text.push_str(&format!("data: {line}{eol}"));
        }
        text.push_str(eol);
    }
    text.push_str(&format!("data: [DONE]{eol}{eol}"));
    text.into_bytes()
}

/// Cuts `bytes` at the given points (any byte, mid-character included).
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

    /// Any cut of a valid stream reads as the same events, the relay
    /// forwards every chunk (intact through the edge's framing: checked
    /// inside `relay`) and accounts all the text.
    #[test]
    fn any_cut_of_a_valid_stream_reads_the_same(
        contents in prop::collection::vec("\\PC{0,12}|[\"\\\\\n\r\u{2028}é🦀]{0,4}", 1..8),
        multiline in prop::collection::vec(any::<bool>(), 8),
        crlf in any::<bool>(),
        comments in any::<bool>(),
        points in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let bytes = body(&contents, &multiline, crlf, comments);
        let whole = read_events(&[&bytes]);
        let chunks = cut(&bytes, &points);
        let split = read_events(&chunks);
        prop_assert_eq!(&whole, &split);
        prop_assert!(!split.1);
        let (forwarded, mut tally) = openai_stream::relay(&split.0);
        prop_assert_eq!(forwarded.len(), contents.len());
        for (index, (sent, content)) in forwarded.iter().zip(&contents).enumerate() {
            let sent: Value = serde_json::from_slice(sent).expect("forwarded JSON");
            prop_assert_eq!(sent, chunk(index, content));
        }
        prop_assert_eq!(tally.take_generated(), contents.concat());
    }

    /// Arbitrary bytes never panic, however they are cut.
    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..512)) {
        openai_stream::check(&data);
    }

    /// Bytes that look like SSE (the fields, line ends and JSON an upstream
    /// sends) never panic either.
    #[test]
    fn sse_like_bytes_never_panic(
        parts in prop::collection::vec(
            prop::sample::select(vec![
                "data: ", "data:", "event: ", "id: ", "retry: 5", ": c", "\n", "\r\n", "\r",
                "\n\n", "[DONE]", "{", "}", "\"choices\":[", "]", "{\"delta\":{\"content\":\"a\"}}",
                "\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2,\"total_tokens\":3}",
                ",", "\u{feff}", "é", "\u{0}",
            ]),
            0..40,
        ),
        seed in any::<u16>(),
        max in any::<u8>(),
    ) {
        let mut data = vec![max];
        data.extend_from_slice(&seed.to_le_bytes());
        data.extend(parts.concat().into_bytes());
        openai_stream::check(&data);
    }
}
