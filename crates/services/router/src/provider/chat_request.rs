//! What the router reads of the client's OpenAI chat request, as borrowed
//! views, for protocols that translate it (Anthropic): strings (prompts,
//! base64 images) and JSON schemas are copied once, into the outgoing body,
//! and never re-parsed. OpenAI-compatible upstreams get the request as sent.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

/// The fields of an OpenAI request that have an Anthropic equivalent; the
/// others are dropped (see `anthropic::build_request` for why).
#[derive(Debug, Deserialize)]
pub(super) struct ChatRequestView<'a> {
    #[serde(default, borrow)]
    pub(super) messages: Vec<MessageView<'a>>,
    #[serde(default)]
    pub(super) max_tokens: Option<u64>,
    #[serde(default)]
    pub(super) max_completion_tokens: Option<u64>,
    #[serde(default, borrow)]
    pub(super) stop: Option<Stop<'a>>,
    #[serde(default)]
    pub(super) temperature: Option<f64>,
    #[serde(default)]
    pub(super) top_p: Option<f64>,
    #[serde(default, borrow)]
    pub(super) tools: Option<Vec<ToolView<'a>>>,
    #[serde(default, borrow)]
    pub(super) tool_choice: Option<ToolChoiceView<'a>>,
    #[serde(default)]
    pub(super) parallel_tool_calls: Option<bool>,
    #[serde(default, borrow)]
    pub(super) user: Option<Cow<'a, str>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum Stop<'a> {
    One(#[serde(borrow)] Cow<'a, str>),
    Many(#[serde(borrow)] Vec<Cow<'a, str>>),
}

#[derive(Debug, Deserialize)]
pub(super) struct MessageView<'a> {
    #[serde(borrow)]
    pub(super) role: Cow<'a, str>,
    #[serde(default, borrow)]
    pub(super) content: Option<ContentView<'a>>,
    #[serde(default, borrow)]
    pub(super) tool_calls: Option<Vec<ToolCallView<'a>>>,
    #[serde(default, borrow)]
    pub(super) tool_call_id: Option<Cow<'a, str>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum ContentView<'a> {
    Text(#[serde(borrow)] Cow<'a, str>),
    Parts(#[serde(borrow)] Vec<PartView<'a>>),
}

#[derive(Debug, Deserialize)]
pub(super) struct PartView<'a> {
    #[serde(rename = "type", borrow)]
    pub(super) kind: Cow<'a, str>,
    #[serde(default, borrow)]
    pub(super) text: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub(super) image_url: Option<ImageUrlView<'a>>,
}

#[derive(Debug, Deserialize)]
pub(super) struct ImageUrlView<'a> {
    #[serde(borrow)]
    pub(super) url: Cow<'a, str>,
}

#[derive(Debug, Deserialize)]
pub(super) struct ToolCallView<'a> {
    #[serde(borrow)]
    pub(super) id: Cow<'a, str>,
    #[serde(borrow)]
    pub(super) function: FunctionCallView<'a>,
}

#[derive(Debug, Deserialize)]
pub(super) struct FunctionCallView<'a> {
    #[serde(borrow)]
    pub(super) name: Cow<'a, str>,
    #[serde(default, borrow)]
    pub(super) arguments: Cow<'a, str>,
}

#[derive(Debug, Deserialize)]
pub(super) struct ToolView<'a> {
    #[serde(rename = "type", default, borrow)]
    pub(super) kind: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub(super) function: Option<FunctionView<'a>>,
}

#[derive(Debug, Deserialize)]
pub(super) struct FunctionView<'a> {
    #[serde(borrow)]
    pub(super) name: Cow<'a, str>,
    #[serde(default, borrow)]
    pub(super) description: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub(super) parameters: Option<&'a RawValue>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum ToolChoiceView<'a> {
    Mode(#[serde(borrow)] Cow<'a, str>),
    Named {
        #[serde(borrow)]
        function: NamedFunction<'a>,
    },
}

#[derive(Debug, Deserialize)]
pub(super) struct NamedFunction<'a> {
    #[serde(borrow)]
    pub(super) name: Cow<'a, str>,
}
