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

/// Loads the BPEs of `upstream_models` now. Blocking (call it on the
/// blocking pool): loading one takes up to half a second in a release
/// build and seconds in a debug build on a busy machine. The router calls
/// it when its drain begins: the first estimate that needs a BPE is often a
/// cut stream's bill at shutdown, which must reach the spool before the
/// process's grace period ends.
pub fn warm<'a>(upstream_models: impl IntoIterator<Item = &'a str>) {
    for model in upstream_models {
        let _ = Counter::for_model(model);
    }
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

/// Input tokens of an OpenAI embeddings request body: each string of
/// `input` counted with the model's BPE, token arrays (`[1, 2]`, or a list
/// of them) by their length. A body without `input` is counted as text,
/// whole.
pub fn input_tokens(upstream_model: &str, body: &[u8]) -> u64 {
    let counter = Counter::for_model(upstream_model);
    let request: Option<Value> = serde_json::from_slice(body).ok();
    let item = |item: &Value| match item {
        Value::String(text) => counter.count(text),
        Value::Number(_) => 1,
        Value::Array(tokens) => tokens.len() as u64,
        _ => 0,
    };
    match request.as_ref().and_then(|request| request.get("input")) {
        Some(Value::Array(items)) => items.iter().map(item).sum(),
        Some(input @ Value::String(_)) => item(input),
        _ => counter.count(&String::from_utf8_lossy(body)),
    }
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
mod tests;
