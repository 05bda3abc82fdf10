//! The parts of a chat completion request that llmgw reads.

use std::borrow::Cow;

use serde::Deserialize;

/// A view of `POST /v1/chat/completions`. Required fields are `Option` so
/// that a missing one is reported with its `param` rather than as a generic
/// parse error. Unknown fields are ignored here and forwarded untouched.
#[derive(Debug, Default, Deserialize)]
pub struct ChatRequest<'a> {
    #[serde(borrow)]
    pub model: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub messages: Option<Vec<Message<'a>>>,
    pub stream: Option<bool>,
    pub stream_options: Option<StreamOptions>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub max_tokens: Option<u64>,
    pub max_completion_tokens: Option<u64>,
    pub n: Option<u32>,
}

impl ChatRequest<'_> {
    /// The output cap the client asked for, under either name.
    pub fn requested_max_tokens(&self) -> Option<u64> {
        self.max_completion_tokens.or(self.max_tokens)
    }

    /// Characters of prompt text across every message.
    pub fn prompt_chars(&self) -> usize {
        self.messages
            .iter()
            .flatten()
            .filter_map(|message| message.content.as_ref())
            .map(Content::text_chars)
            .sum()
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

#[derive(Debug, Deserialize)]
pub struct Message<'a> {
    #[serde(borrow)]
    pub role: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub content: Option<Content<'a>>,
}

/// The roles OpenAI accepts (`function` is deprecated but still served).
pub const ROLES: [&str; 6] = [
    "system",
    "developer",
    "user",
    "assistant",
    "tool",
    "function",
];

/// `content` is a string or an array of parts (text, image_url, audio...).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Content<'a> {
    #[serde(borrow)]
    Text(Cow<'a, str>),
    Parts(Vec<Part<'a>>),
}

impl Content<'_> {
    /// Content parts: 0 for a plain string.
    pub fn part_count(&self) -> usize {
        match self {
            Content::Text(_) => 0,
            Content::Parts(parts) => parts.len(),
        }
    }

    pub fn text_chars(&self) -> usize {
        match self {
            Content::Text(text) => text.chars().count(),
            Content::Parts(parts) => parts
                .iter()
                .filter_map(|part| part.text.as_deref())
                .map(|text| text.chars().count())
                .sum(),
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct Part<'a> {
    #[serde(borrow)]
    pub text: Option<Cow<'a, str>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_prompt_chars_in_strings_and_parts() {
        let body = r#"{"model":"m","messages":[
            {"role":"system","content":"héllo"},
            {"role":"user","content":[{"type":"text","text":"abc"},{"type":"image_url","image_url":{"url":"x"}}]},
            {"role":"assistant","content":null,"tool_calls":[]}
        ],"unknown_param":{"a":1}}"#;
        let request: ChatRequest = serde_json::from_str(body).expect("parses");
        assert_eq!(request.prompt_chars(), 8);
        assert_eq!(request.model.as_deref(), Some("m"));
    }

    #[test]
    fn escaped_strings_still_parse() {
        let body = r#"{"model":"m","messages":[{"role":"user","content":"a\nb\u00e9"}]}"#;
        let request: ChatRequest = serde_json::from_str(body).expect("parses");
        assert_eq!(request.prompt_chars(), 4);
    }
}
