//! The Anthropic Messages request, as sent: built from borrowed parts of
//! the client's request, serialised once.

use std::borrow::Cow;

use serde::{Serialize, Serializer};
use serde_json::value::RawValue;

/// The Messages request. Optional fields are left out, not sent as `null`.
#[derive(Debug, Serialize)]
pub(super) struct MessagesRequest<'a> {
    pub(super) model: &'a str,
    pub(super) max_tokens: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(super) system: String,
    pub(super) messages: Vec<Turn<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(super) stop_sequences: Vec<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) top_p: Option<f64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub(super) stream: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(super) tools: Vec<Tool<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) tool_choice: Option<ToolChoice<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) metadata: Option<Metadata<'a>>,
}

#[derive(Debug, Serialize)]
pub(super) struct Turn<'a> {
    pub(super) role: &'static str,
    #[serde(serialize_with = "text_or_blocks")]
    pub(super) content: Vec<Block<'a>>,
}

#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum Block<'a> {
    Text {
        text: Cow<'a, str>,
    },
    Image {
        source: ImageSource<'a>,
    },
    ToolUse {
        id: Cow<'a, str>,
        name: Cow<'a, str>,
        input: Box<RawValue>,
    },
    ToolResult {
        tool_use_id: Cow<'a, str>,
        #[serde(
            serialize_with = "text_or_blocks",
            skip_serializing_if = "Vec::is_empty"
        )]
        content: Vec<Block<'a>>,
    },
}

#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum ImageSource<'a> {
    Base64 {
        media_type: Cow<'a, str>,
        data: Cow<'a, str>,
    },
    Url {
        url: Cow<'a, str>,
    },
}

#[derive(Debug, Serialize)]
pub(super) struct Tool<'a> {
    pub(super) name: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) description: Option<Cow<'a, str>>,
    pub(super) input_schema: Schema<'a>,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
pub(super) enum Schema<'a> {
    Given(&'a RawValue),
    /// Anthropic requires a schema; OpenAI allows a function without one.
    NoParameters {
        #[serde(rename = "type")]
        kind: &'static str,
        properties: serde_json::Map<String, serde_json::Value>,
    },
}

#[derive(Debug, Serialize)]
pub(super) struct ToolChoice<'a> {
    #[serde(rename = "type")]
    pub(super) kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) name: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub(super) disable_parallel_tool_use: bool,
}

#[derive(Debug, Serialize)]
pub(super) struct Metadata<'a> {
    pub(super) user_id: Cow<'a, str>,
}

/// A lone text block is sent as a plain string, the form Anthropic's own
/// examples use; anything else as a list of blocks.
pub(super) fn text_or_blocks<S: Serializer>(
    blocks: &[Block<'_>],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match blocks {
        [Block::Text { text }] => serializer.serialize_str(text),
        blocks => blocks.serialize(serializer),
    }
}
