//! Token counts, checked against tiktoken-rs itself and the counts in
//! OpenAI's cookbook.

use super::*;

fn bpe(encoding: Encoding) -> &'static CoreBPE {
    match encoding {
        Encoding::O200kBase | Encoding::Proxy => O200K_BASE.as_ref(),
        Encoding::Cl100kBase => CL100K_BASE.as_ref(),
    }
    .expect("the embedded BPE loads")
}

#[test]
fn tokens_of_known_strings_on_both_encodings() {
    // (text, o200k_base, cl100k_base), as tiktoken counts them.
    let cases = [
        ("", 0, 0),
        ("hello world", 2, 2),
        ("Hello, world!", 4, 4),
        ("The quick brown fox jumps over the lazy dog.", 10, 10),
        ("antidisestablishmentarianism", 6, 6),
        ("你好，世界", 3, 6),
    ];
    for (text, o200k, cl100k) in cases {
        assert_eq!(text_tokens("gpt-4o", text), o200k, "o200k_base: {text:?}");
        assert_eq!(text_tokens("gpt-4", text), cl100k, "cl100k_base: {text:?}");
    }
}

#[test]
fn tokens_model_mapping() {
    for model in [
        "gpt-4o",
        "gpt-4o-mini",
        "gpt-4o-2024-08-06",
        "GPT-4o-mini",
        "openai/gpt-4o",
        "ft:gpt-4o-mini:acme::abc123",
        "gpt-4.1-nano",
        "gpt-4.5-preview",
        "gpt-5",
        "gpt-5.1-codex",
        "o1",
        "o1-mini",
        "o3-pro-2025-06-10",
        "o4",
        "o4-mini",
        "chatgpt-4o-latest",
        "gpt-oss-120b",
    ] {
        assert_eq!(encoding_for(model), Encoding::O200kBase, "{model}");
    }
    for model in [
        "gpt-4",
        "gpt-4-turbo",
        "gpt-4-0613",
        "gpt-3.5-turbo",
        "gpt-3.5-turbo-0125",
        "gpt-35-turbo",
        "text-embedding-3-small",
        "text-embedding-future-model",
    ] {
        assert_eq!(encoding_for(model), Encoding::Cl100kBase, "{model}");
    }
    for model in [
        "claude-3-5-sonnet",
        "claude-sonnet-4-5",
        "deepseek-chat",
        "meta-llama/Llama-3.1-8B-Instruct",
        "mistral-large-latest",
        "qwen-plus",
        "mock-small",
        "bench",
        "davinci",
        "text-davinci-003",
        "o",
        "omni",
        "",
    ] {
        assert_eq!(encoding_for(model), Encoding::Proxy, "{model}");
    }
    // The proxy is o200k_base.
    assert_eq!(text_tokens("claude-3-5-sonnet", "你好，世界"), 3);
}

#[test]
fn tokens_special_token_text_is_ordinary_text() {
    for model in ["gpt-4o", "gpt-4", "claude-3-5-sonnet"] {
        assert_eq!(text_tokens(model, "<|endoftext|>"), 7, "{model}");
        assert!(text_tokens(model, "<|endofprompt|><|fim_prefix|><|im_start|>") > 3);
    }
    let body = br#"{"model":"m","messages":[{"role":"user","content":"<|endoftext|>"}]}"#;
    assert_eq!(prompt_tokens("gpt-4o", body), 3 + 1 + 7 + 3);
}

#[test]
fn tokens_cookbook_example_matches_the_openai_api() {
    // The OpenAI cookbook's "How to count tokens with tiktoken" example,
    // whose counts it checked against the API's reported prompt_tokens.
    let body = serde_json::json!({
        "model": "alias",
        "messages": [
            {"role": "system", "content": "You are a helpful, pattern-following assistant that translates corporate jargon into plain English."},
            {"role": "system", "name": "example_user", "content": "New synergies will help drive top-line growth."},
            {"role": "system", "name": "example_assistant", "content": "Things working well together will increase revenue."},
            {"role": "system", "name": "example_user", "content": "Let's circle back when we have more bandwidth to touch base on opportunities for increased leverage."},
            {"role": "system", "name": "example_assistant", "content": "Let's talk later when we're less busy about how to do better."},
            {"role": "user", "content": "This late pivot means we don't have time to boil the ocean for the client deliverable."},
        ],
        "temperature": 0,
        "max_tokens": 1,
    })
    .to_string();
    assert_eq!(prompt_tokens("gpt-3.5-turbo", body.as_bytes()), 129);
    assert_eq!(prompt_tokens("gpt-4-0613", body.as_bytes()), 129);
    assert_eq!(prompt_tokens("gpt-4o", body.as_bytes()), 124);
    assert_eq!(prompt_tokens("gpt-4o-mini", body.as_bytes()), 124);
}

#[test]
fn tokens_message_counting_rule() {
    let model = "gpt-4o-mini";
    let t = |text: &str| text_tokens(model, text);
    let body = br#"{"model":"m","stream":true,"messages":[
        {"role":"system","content":"You are terse."},
        {"role":"user","name":"bob","content":"hello world"}
    ],"max_tokens":64}"#;
    let expected = (3 + t("system") + t("You are terse."))
        + (3 + t("user") + t("bob") + 1 + t("hello world"))
        + 3;
    assert_eq!(expected, 3 + 1 + 4 + 3 + 1 + 1 + 1 + 2 + 3);
    assert_eq!(prompt_tokens(model, body), expected);
}

#[test]
fn tokens_content_parts() {
    let model = "gpt-4o";
    let string = br#"{"messages":[{"role":"user","content":"hello world"}]}"#;
    let parts = br#"{"messages":[{"role":"user","content":[
        {"type":"text","text":"hello"},
        {"type":"text","text":" world"}
    ]}]}"#;
    assert_eq!(prompt_tokens(model, string), 3 + 1 + 2 + 3);
    assert_eq!(prompt_tokens(model, parts), 3 + 1 + 2 + 3);

    let images = br#"{"messages":[{"role":"user","content":[
        {"type":"text","text":"hello world"},
        {"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgo=","detail":"low"}},
        {"type":"image_url","image_url":{"url":"https://example.com/cat.png"}},
        {"type":"input_audio","input_audio":{"data":"UklGRg==","format":"wav"}}
    ]}]}"#;
    assert_eq!(prompt_tokens(model, images), 3 + 1 + 2 + 85 + 765 + 3);
}

#[test]
fn tokens_tool_calls_tool_messages_and_tool_definitions() {
    let model = "gpt-4o";
    let t = |text: &str| text_tokens(model, text);
    let arguments = r#"{"location":"Paris"}"#;
    let body = serde_json::json!({
        "messages": [
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function",
                 "function": {"name": "get_weather", "arguments": arguments}}
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        ],
    });
    let messages = (3 + t("assistant") + 1 + t("get_weather") + t(arguments))
        + (3 + t("tool") + t("call_1") + t("sunny"));
    assert_eq!(
        prompt_tokens(model, body.to_string().as_bytes()),
        messages + 3
    );

    let tools = serde_json::json!([{"type": "function", "function": {
        "name": "get_weather",
        "description": "Get the weather",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}},
    }}]);
    let mut with_tools = body;
    with_tools["tools"] = tools.clone();
    assert_eq!(
        prompt_tokens(model, with_tools.to_string().as_bytes()),
        messages + 3 + t(&tools.to_string())
    );
}

#[test]
fn tokens_malformed_body_counts_the_whole_text() {
    for body in [
        &b"not json {"[..],
        br#"{"messages":"hello world"}"#,
        br#"{"model":"m"}"#,
        b"[1,2,3]",
    ] {
        let text = std::str::from_utf8(body).expect("utf-8");
        assert_eq!(prompt_tokens("gpt-4o", body), text_tokens("gpt-4o", text));
    }
    assert_eq!(prompt_tokens("gpt-4o", b"hello world"), 2);
    // Not even UTF-8: the invalid byte becomes U+FFFD.
    assert!(prompt_tokens("gpt-4o", b"hello \xff world") > 2);
    assert_eq!(prompt_tokens("gpt-4o", b""), 0);
}

#[test]
fn tokens_segmenting_keeps_the_count_exact() {
    let paragraph = "The quick brown fox jumps over the lazy dog; naïve café owners \
                     don't re-index 1234567 rows.\n\n  Indented   line,\tand a tab.\r\n";
    let text = paragraph.repeat(1_000);
    assert!(text.len() > 4 * SEGMENT_BYTES);
    assert!(segments(&text).count() > 4);
    assert!(segments(&text).all(|segment| segment.len() <= SEGMENT_BYTES));
    assert_eq!(segments(&text).collect::<String>(), text);
    for (model, encoding) in [
        ("gpt-4o", Encoding::O200kBase),
        ("gpt-4", Encoding::Cl100kBase),
    ] {
        let whole = bpe(encoding).encode_ordinary(&text).len() as u64;
        assert_eq!(text_tokens(model, &text), whole, "{model}");
    }
}

#[test]
fn tokens_segments_of_text_without_spaces() {
    // Multi-byte characters and no space at all: cut at char boundaries.
    let text = format!("{}x", "é\u{3000}".repeat(20_000));
    assert!(segments(&text).all(|segment| segment.len() <= SEGMENT_BYTES));
    assert_eq!(segments(&text).collect::<String>(), text);
    let whole = bpe(Encoding::O200kBase).encode_ordinary(&text).len() as u64;
    let counted = text_tokens("gpt-4o", &text);
    assert!(counted.abs_diff(whole) <= segments(&text).count() as u64);
}

#[test]
fn tokens_long_whitespace_run_does_not_panic() {
    // Handed to tiktoken-rs whole, a million spaces before a letter make
    // its regex give up and `encode_ordinary` panic. (About 6 s in a
    // debug build.)
    let text = format!("{}x", " ".repeat(1_000_000));
    assert!(segments(&text).all(|segment| segment.len() <= SEGMENT_BYTES));
    let tokens = text_tokens("gpt-4o", &text);
    // o200k_base has a token for 128 spaces.
    assert!((7_800..=8_000).contains(&tokens), "{tokens}");
}

#[test]
fn tokens_chars_estimate() {
    assert_eq!(chars_estimate(""), 0);
    assert_eq!(chars_estimate("abcde"), 2);
    assert_eq!(chars_estimate("你好世界"), 1);
}

#[test]
fn tokens_embeddings_input() {
    let one = text_tokens("text-embedding-3-small", "Hello world");
    let body = br#"{"model":"e","input":"Hello world"}"#;
    assert_eq!(input_tokens("text-embedding-3-small", body), one);
    let body = br#"{"model":"e","input":["Hello world","Hello world"]}"#;
    assert_eq!(input_tokens("text-embedding-3-small", body), 2 * one);
    // Token arrays are already tokens.
    assert_eq!(input_tokens("e", br#"{"input":[1,2,3]}"#), 3);
    assert_eq!(input_tokens("e", br#"{"input":[[1,2],[3]]}"#), 3);
}
