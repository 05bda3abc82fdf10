//! Token estimates with OpenAI's own BPEs (`tiktoken-rs`), for answers whose
//! provider reported no usage and for streams the client left early.
//!
//! Each BPE is loaded on its first use, never at start-up, so a router whose
//! providers always report usage never pays for them: o200k_base costs about
//! 46 MB of resident memory and 0.35–0.6 s to load, cl100k_base about 24 MB
//! and 0.15–0.25 s. Then 1,000 characters of English take 55–65 µs
//! (o200k_base) to 80 µs (cl100k_base), and pathological text (a megabyte
//! of one letter or of punctuation) about 1 µs a byte. Release build, 2
//! cores; `cargo bench -p llmgw-router --bench routing` measures them. Both
//! the first call and a long text are blocking work: on an async worker,
//! call these from `spawn_blocking` when the text may be large.
//!
//! Counting never panics on client text: special-token text such as
//! `<|endoftext|>` is ordinary text here (`encode_ordinary`), long texts are
//! handed to the BPE in bounded segments (see [`SEGMENT_BYTES`]), and if a
//! BPE could not be loaded the count falls back to four characters a token.

use std::panic::{self, AssertUnwindSafe};
use std::sync::{LazyLock, Once};

use serde_json::Value;
use tiktoken_rs::CoreBPE;
use tiktoken_rs::tokenizer::{Tokenizer, get_tokenizer};

/// Which BPE counts an upstream model's tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// gpt-4o, gpt-4.1, gpt-4.5, gpt-5, the o1 / o3 / o4 reasoning families,
    /// chatgpt-*, codex-mini and gpt-oss (whose o200k_harmony has the same
    /// ranks as o200k_base and differs only in special tokens, which
    /// `encode_ordinary` never produces).
    O200kBase,
    /// gpt-4 (not 4o / 4.1 / 4.5), gpt-3.5-turbo, text-embedding-*,
    /// davinci-002 and babbage-002.
    Cl100kBase,
    /// Every other model: Claude, DeepSeek, Llama, Mistral, Qwen, the mock
    /// upstream's models, and OpenAI's retired p50k / r50k models. Their own
    /// tokenizers are not OpenAI's, and shipping each would cost more memory
    /// than an estimate is worth, so they are counted with o200k_base as a
    /// proxy: the closest modern BPE (a 200k vocabulary, like theirs trained
    /// on multilingual text and code). Estimates are flagged `estimated`
    /// anyway.
    Proxy,
}

/// Which BPE `upstream_model` uses. OpenAI's names are resolved with
/// tiktoken-rs's own model table (`get_tokenizer`: exact names, dated and
/// fine-tuned `ft:` names), completed for the families it does not list
/// (`o4`, any `o<N>` and `o<N>-*`, any `chatgpt-*` and `text-embedding-*`).
/// A vendor prefix such as `openai/` is ignored, and so is case.
pub fn encoding_for(upstream_model: &str) -> Encoding {
    let name = upstream_model
        .rsplit('/')
        .next()
        .unwrap_or(upstream_model)
        .trim()
        .to_ascii_lowercase();
    match get_tokenizer(&name) {
        Some(Tokenizer::O200kBase | Tokenizer::O200kHarmony) => Encoding::O200kBase,
        Some(Tokenizer::Cl100kBase) => Encoding::Cl100kBase,
        Some(Tokenizer::P50kBase | Tokenizer::P50kEdit | Tokenizer::R50kBase | Tokenizer::Gpt2) => {
            Encoding::Proxy
        }
        None if is_o_series(&name) || name.starts_with("chatgpt-") => Encoding::O200kBase,
        None if name.starts_with("text-embedding-") => Encoding::Cl100kBase,
        None => Encoding::Proxy,
    }
}

/// `o1`, `o3`, `o4`, `o4-mini`, `o3-pro-2025-06-10`...: an `o`, digits, then
/// the end or a dash.
fn is_o_series(name: &str) -> bool {
    let Some(rest) = name.strip_prefix('o') else {
        return false;
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    digits > 0 && matches!(rest.as_bytes().get(digits), None | Some(b'-'))
}

/// Tokens of `text` as `upstream_model`'s BPE splits it (see [`Encoding`]).
pub fn text_tokens(upstream_model: &str, text: &str) -> u64 {
    Counter::for_model(upstream_model).count(text)
}

/// Tokens every message costs besides its fields: `<|start|>`, the role
/// separator and `<|end|>` (OpenAI cookbook, "How to count tokens with
/// tiktoken", exact for gpt-3.5-turbo-0125 and later, gpt-4 and gpt-4o).
const TOKENS_PER_MESSAGE: u64 = 3;
/// Extra token for a message's `name` (same source).
const TOKENS_PER_NAME: u64 = 1;
/// Every reply is primed with `<|start|>assistant<|message|>` (same source).
const REPLY_PRIMING: u64 = 3;
/// Framing of one tool or function call in an assistant message, besides its
/// name and arguments (tiktoken-rs's `num_tokens_from_messages` heuristic).
const TOKENS_PER_TOOL_CALL: u64 = 1;
/// An image at `detail: "low"`: a flat 85 tokens whatever its size (OpenAI's
/// vision pricing for the gpt-4o family).
const IMAGE_LOW_DETAIL_TOKENS: u64 = 85;
/// An image at `high` or `auto` detail (or none given): 85 + 170 per 512 px
/// tile depending on its size, which the router does not decode; counted as
/// a 1024×1024 image (four tiles, 765 tokens), OpenAI's own worked example.
const IMAGE_DEFAULT_TOKENS: u64 = 765;

/// Prompt tokens of an OpenAI chat completions request body (the client's
/// JSON bytes), by the OpenAI cookbook's counting rule for chat: per message
/// 3 tokens, plus the tokens of its role, content, `name` (+1), refusal,
/// `tool_call_id`, and of each tool call's function name and arguments (+1
/// each call); then 3 for the reply priming. Content may be a string or an
/// array of parts: text and refusal parts are counted, image parts are a
/// flat estimate (85 tokens at low detail, 765 otherwise), audio and file
/// parts are not counted (their size is not known from the request).
/// Tool definitions (`tools`, and the legacy `functions`) count as the
/// tokens of their JSON text: OpenAI renders them into its own schema
/// syntax, which is usually somewhat shorter, so this errs high.
///
/// A body that is not a JSON object with a `messages` array is counted as
/// text, whole.
pub fn prompt_tokens(upstream_model: &str, body: &[u8]) -> u64 {
    let counter = Counter::for_model(upstream_model);
    let request: Option<Value> = serde_json::from_slice(body).ok();
    let Some(messages) = request
        .as_ref()
        .and_then(|request| request.get("messages"))
        .and_then(Value::as_array)
    else {
        return counter.count(&String::from_utf8_lossy(body));
    };
    let mut tokens = REPLY_PRIMING;
    for message in messages {
        tokens += counter.message(message);
    }
    for key in ["tools", "functions"] {
        if let Some(definitions) = request
            .as_ref()
            .and_then(|request| request.get(key))
            .filter(|definitions| !definitions.is_null())
        {
            tokens += counter.count(&definitions.to_string());
        }
    }
    tokens
}

static O200K_BASE: LazyLock<Option<CoreBPE>> =
    LazyLock::new(|| load("o200k_base", tiktoken_rs::o200k_base));
static CL100K_BASE: LazyLock<Option<CoreBPE>> =
    LazyLock::new(|| load("cl100k_base", tiktoken_rs::cl100k_base));

/// Builds a BPE from the tables embedded in tiktoken-rs. Its own
/// `*_singleton()` accessors would do the same but panic on failure (and
/// then on every later call, their `LazyLock` poisoned); here a failure is
/// logged once and counting falls back to characters.
fn load<E: std::fmt::Display>(
    name: &'static str,
    build: fn() -> Result<CoreBPE, E>,
) -> Option<CoreBPE> {
    match panic::catch_unwind(build) {
        Ok(Ok(bpe)) => Some(bpe),
        Ok(Err(error)) => {
            tracing::error!(encoding = name, %error, "could not load a BPE; estimating tokens as characters / 4");
            None
        }
        Err(_) => {
            tracing::error!(
                encoding = name,
                "loading a BPE panicked; estimating tokens as characters / 4"
            );
            None
        }
    }
}

/// Longest text handed to the BPE in one call. The BPE's pre-tokenising
/// regex (fancy-regex, with look-ahead) fails, and tiktoken-rs then panics,
/// on a run of about a million whitespace characters; segments this short
/// can never come near that. Texts are cut just before a space that follows
/// a non-space, where both encodings start a new piece anyway, so the count
/// is exact; only text without such a space for 8 KiB (a long run of
/// whitespace, base64...) is cut elsewhere, off by a token or so per cut.
const SEGMENT_BYTES: usize = 16 * 1024;

/// Counts with one model's BPE, or by characters when it failed to load.
struct Counter {
    bpe: Option<&'static CoreBPE>,
}

impl Counter {
    fn for_model(upstream_model: &str) -> Counter {
        let bpe = match encoding_for(upstream_model) {
            Encoding::O200kBase | Encoding::Proxy => &O200K_BASE,
            Encoding::Cl100kBase => &CL100K_BASE,
        };
        Counter { bpe: bpe.as_ref() }
    }

    fn count(&self, text: &str) -> u64 {
        let Some(bpe) = self.bpe else {
            return chars_estimate(text);
        };
        segments(text)
            .map(|segment| {
                panic::catch_unwind(AssertUnwindSafe(|| bpe.encode_ordinary(segment).len()))
                    .map(|tokens| tokens as u64)
                    .unwrap_or_else(|_| {
                        static LOGGED: Once = Once::new();
                        LOGGED.call_once(|| {
                            tracing::error!(
                                "the BPE panicked on a text; estimating that text as characters / 4"
                            );
                        });
                        chars_estimate(segment)
                    })
            })
            .sum()
    }

    fn string(&self, value: &Value) -> u64 {
        value.as_str().map_or(0, |text| self.count(text))
    }

    /// One chat message (see [`prompt_tokens`]).
    fn message(&self, message: &Value) -> u64 {
        let Some(fields) = message.as_object() else {
            return TOKENS_PER_MESSAGE + self.count(&message.to_string());
        };
        let mut tokens = TOKENS_PER_MESSAGE;
        for (key, value) in fields {
            tokens += match key.as_str() {
                "role" | "refusal" | "tool_call_id" => self.string(value),
                "name" if value.is_string() => self.string(value) + TOKENS_PER_NAME,
                "content" => self.content(value),
                "tool_calls" => value
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|call| call.get("function"))
                    .map(|function| self.function_call(function))
                    .sum(),
                "function_call" => self.function_call(value),
                // `audio` only refers to an earlier answer by id; other
                // fields are not rendered into the prompt we know of.
                _ => 0,
            };
        }
        tokens
    }

    fn function_call(&self, function: &Value) -> u64 {
        let arguments = match function.get("arguments") {
            Some(Value::String(arguments)) => self.count(arguments),
            Some(Value::Null) | None => 0,
            Some(arguments) => self.count(&arguments.to_string()),
        };
        TOKENS_PER_TOOL_CALL + function.get("name").map_or(0, |name| self.string(name)) + arguments
    }

    fn content(&self, content: &Value) -> u64 {
        match content {
            Value::Null => 0,
            Value::String(text) => self.count(text),
            Value::Array(parts) => parts.iter().map(|part| self.part(part)).sum(),
            other => self.count(&other.to_string()),
        }
    }

    fn part(&self, part: &Value) -> u64 {
        match part.get("type").and_then(Value::as_str) {
            Some("image_url") => {
                let detail = part
                    .get("image_url")
                    .and_then(|image| image.get("detail"))
                    .and_then(Value::as_str);
                if detail == Some("low") {
                    IMAGE_LOW_DETAIL_TOKENS
                } else {
                    IMAGE_DEFAULT_TOKENS
                }
            }
            Some("refusal") => part.get("refusal").map_or(0, |text| self.string(text)),
            Some("input_audio" | "file") => 0,
            _ => part.get("text").map_or(0, |text| self.string(text)),
        }
    }
}

/// The estimate without a BPE: about four characters a token.
fn chars_estimate(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4)
}

/// `text` in pieces of at most [`SEGMENT_BYTES`], cut where the count stays
/// exact whenever the text allows it.
fn segments(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let (segment, tail) = rest.split_at(cut(rest));
        rest = tail;
        Some(segment)
    })
}

/// Where the first segment of `text` ends.
fn cut(text: &str) -> usize {
    if text.len() <= SEGMENT_BYTES {
        return text.len();
    }
    let bytes = text.as_bytes();
    let before_space = (SEGMENT_BYTES / 2..=SEGMENT_BYTES).rev().find(|&at| {
        bytes[at] == b' '
            && text[..at]
                .chars()
                .next_back()
                .is_some_and(|previous| !previous.is_whitespace())
    });
    if let Some(at) = before_space {
        return at;
    }
    // No such space: any character boundary (at most 3 bytes back).
    let mut at = SEGMENT_BYTES;
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

#[cfg(test)]
mod tests {
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
}
