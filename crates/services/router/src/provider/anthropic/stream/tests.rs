use llmgw_proto::ErrorCode;

use crate::provider::chat_chunk::ChunkView;

use super::*;

/// Feeds `events` and returns every chunk as text, and whether the last
/// event completed the message.
fn run(translator: &mut StreamTranslator, events: &[(&str, &str)]) -> (Vec<String>, bool) {
    let mut chunks = Vec::new();
    let mut done = false;
    for (event, data) in events {
        let translated = translator.on_event(event, data).expect("translates");
        chunks.extend(
            translated
                .chunks
                .iter()
                .map(|chunk| String::from_utf8(chunk.to_vec()).expect("utf-8")),
        );
        done = translated.done;
    }
    (chunks, done)
}

const HEAD: &str = r#"{"id":"msg_01","object":"chat.completion.chunk","created":1700000000,"model":"claude-alias","choices":[{"index":0,"delta":"#;

fn chunk(delta: &str, finish: &str) -> String {
    format!(r#"{HEAD}{delta},"finish_reason":{finish}}}]}}"#)
}

#[test]
fn text_and_tool_use_with_usage() {
    let events = [
        (
            "message_start",
            r#"{"type":"message_start","message":{"id":"msg_01","type":"message","role":"assistant","content":[],"model":"claude-sonnet-4-5","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,"cache_creation_input_tokens":0,"cache_read_input_tokens":10,"output_tokens":1}}}"#,
        ),
        ("ping", r#"{"type": "ping"}"#),
        (
            "content_block_start",
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
        ),
        (
            "content_block_delta",
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Let me check"}}"#,
        ),
        (
            "content_block_delta",
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" \"Paris\"."}}"#,
        ),
        (
            "content_block_stop",
            r#"{"type":"content_block_stop","index":0}"#,
        ),
        (
            "content_block_start",
            r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_01","name":"get_weather","input":{}}}"#,
        ),
        (
            "content_block_delta",
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}"#,
        ),
        (
            "content_block_delta",
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"city\": "}}"#,
        ),
        (
            "content_block_delta",
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"\"Paris\"}"}}"#,
        ),
        (
            "content_block_stop",
            r#"{"type":"content_block_stop","index":1}"#,
        ),
        (
            "message_delta",
            r#"{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":42}}"#,
        ),
        ("message_stop", r#"{"type":"message_stop"}"#),
    ];
    let mut translator = StreamTranslator::with_created("claude-alias", 1_700_000_000);
    let (chunks, done) = run(&mut translator, &events);
    assert!(done);
    let expected = [
        chunk(r#"{"role":"assistant","content":""}"#, "null"),
        chunk(r#"{"content":"Let me check"}"#, "null"),
        chunk(r#"{"content":" \"Paris\"."}"#, "null"),
        chunk(
            r#"{"tool_calls":[{"index":0,"id":"toolu_01","type":"function","function":{"name":"get_weather","arguments":""}}]}"#,
            "null",
        ),
        chunk(
            r#"{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\": "}}]}"#,
            "null",
        ),
        chunk(
            r#"{"tool_calls":[{"index":0,"function":{"arguments":"\"Paris\"}"}}]}"#,
            "null",
        ),
        chunk("{}", r#""tool_calls""#),
        concat!(
            r#"{"id":"msg_01","object":"chat.completion.chunk","created":1700000000,"model":"claude-alias","#,
            r#""choices":[],"usage":{"prompt_tokens":35,"completion_tokens":42,"total_tokens":77,"#,
            r#""prompt_tokens_details":{"cached_tokens":10}}}"#
        )
        .to_owned(),
    ];
    assert_eq!(chunks, expected);

    // What the router reads of them.
    let view: ChunkView = serde_json::from_str(&chunks[1]).expect("chunk view");
    let delta = view.choices[0].delta.as_ref().expect("delta");
    let mut text = String::new();
    delta.generated_text(&mut text);
    assert_eq!(text.chars().count(), 12);
    let view: ChunkView = serde_json::from_str(&chunks[6]).expect("chunk view");
    assert_eq!(view.choices[0].finish_reason.as_deref(), Some("tool_calls"));
    let view: ChunkView = serde_json::from_str(&chunks[7]).expect("chunk view");
    assert!(view.choices.is_empty());
    let usage = view.usage.expect("usage");
    assert_eq!(
        (
            usage.prompt_tokens,
            usage.completion_tokens,
            usage.cached_tokens()
        ),
        (35, 42, 10)
    );
}

#[test]
fn thinking_and_argumentless_tools() {
    let events = [
        (
            "message_start",
            r#"{"type":"message_start","message":{"id":"msg_01","usage":{"input_tokens":3,"output_tokens":1}}}"#,
        ),
        (
            "content_block_start",
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":""}}"#,
        ),
        (
            "content_block_delta",
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"Hmm."}}"#,
        ),
        (
            "content_block_delta",
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"c2ln"}}"#,
        ),
        (
            "content_block_stop",
            r#"{"type":"content_block_stop","index":0}"#,
        ),
        (
            "content_block_start",
            r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_02","name":"now","input":{}}}"#,
        ),
        (
            "content_block_stop",
            r#"{"type":"content_block_stop","index":1}"#,
        ),
    ];
    let mut translator = StreamTranslator::with_created("claude-alias", 1_700_000_000);
    let (chunks, done) = run(&mut translator, &events);
    assert!(!done);
    assert_eq!(
        chunks[1..],
        [
            chunk(r#"{"reasoning_content":"Hmm."}"#, "null"),
            chunk(
                r#"{"tool_calls":[{"index":0,"id":"toolu_02","type":"function","function":{"name":"now","arguments":""}}]}"#,
                "null"
            ),
            chunk(
                r#"{"tool_calls":[{"index":0,"function":{"arguments":"{}"}}]}"#,
                "null"
            ),
        ]
    );
}

#[test]
fn stop_without_message_delta_still_finishes() {
    let mut translator = StreamTranslator::with_created("claude-alias", 1_700_000_000);
    let (chunks, done) = run(
        &mut translator,
        &[
            (
                "",
                r#"{"type":"message_start","message":{"id":"msg_01","usage":{"input_tokens":3}}}"#,
            ),
            ("message_stop", r#"{"type":"message_stop"}"#),
        ],
    );
    assert!(done);
    assert_eq!(chunks.len(), 3);
    assert_eq!(chunks[1], chunk("{}", r#""stop""#));
}

#[test]
fn errors() {
    let mut translator = StreamTranslator::new("m");
    let cases = [
        ("overloaded_error", ErrorCode::UpstreamError),
        ("rate_limit_error", ErrorCode::UpstreamRateLimited),
        ("api_error", ErrorCode::UpstreamError),
        ("invalid_request_error", ErrorCode::InvalidRequest),
        ("timeout_error", ErrorCode::UpstreamTimeout),
    ];
    for (kind, code) in cases {
        let data =
            format!(r#"{{"type":"error","error":{{"type":"{kind}","message":"Overloaded"}}}}"#);
        let error = translator
            .on_event("error", &data)
            .expect_err("error event");
        assert_eq!(error.code, code, "{kind}");
    }
    let error = translator
        .on_event("content_block_delta", r#"{"id": broken"#)
        .expect_err("broken");
    assert_eq!(error.message, "the model provider returned invalid JSON");
    let translated = translator
        .on_event("some_future_event", r#"{"type":"some_future_event"}"#)
        .expect("ignored");
    assert!(translated.chunks.is_empty() && !translated.done);
}
