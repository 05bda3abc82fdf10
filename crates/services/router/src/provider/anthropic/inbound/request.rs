//! Anthropic Messages request -> OpenAI chat completions request, for a
//! Messages call served by an OpenAI-compatible deployment.
//!
//! - `system` (a string or text blocks) becomes the first message;
//! - a user turn's `tool_result` blocks become `tool` messages, placed
//!   before the rest of the turn (OpenAI wants them right after the
//!   assistant message that called the tools); text and images become
//!   content parts (a lone text part is sent as a plain string);
//! - an assistant turn's text becomes its content, its `tool_use` blocks its
//!   `tool_calls` (the input object as the arguments string); `thinking` and
//!   `redacted_thinking` blocks are dropped: OpenAI-compatible servers take
//!   no reasoning back;
//! - `stop_sequences` -> `stop`, `metadata.user_id` -> `user`, tools ->
//!   function tools (`input_schema` -> `parameters`), `tool_choice` ->
//!   `auto` / `required` / a named function / `none`, its
//!   `disable_parallel_tool_use` -> `parallel_tool_calls: false`;
//! - `top_k`, `thinking`, `cache_control` and `service_tier` have no OpenAI
//!   equivalent and are dropped; server tools (web search...), documents
//!   other than plain text and blocks this code does not know are refused
//!   with a 400 naming them, rather than silently lost.
//!
//! Strings and JSON schemas are borrowed from the client's body and copied
//! once, into the outgoing one.

use std::borrow::Cow;

use llmgw_proto::ErrorCode;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::provider::ProviderError;

/// What is read of the Messages request.
#[derive(Debug, Deserialize)]
struct MessagesView<'a> {
    #[serde(default, borrow)]
    system: Option<&'a RawValue>,
    #[serde(default, borrow)]
    messages: Vec<TurnView<'a>>,
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(default, borrow)]
    stop_sequences: Option<Vec<Cow<'a, str>>>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    top_p: Option<f64>,
    #[serde(default, borrow)]
    tools: Option<Vec<ToolView<'a>>>,
    #[serde(default, borrow)]
    tool_choice: Option<ToolChoiceView<'a>>,
    #[serde(default, borrow)]
    metadata: Option<MetadataView<'a>>,
}

#[derive(Debug, Deserialize)]
struct TurnView<'a> {
    #[serde(borrow)]
    role: Cow<'a, str>,
    /// A string or a list of blocks: read by [`content`], not through an
    /// untagged enum (which could not borrow the tool inputs' raw JSON).
    #[serde(borrow)]
    content: &'a RawValue,
}

/// One content block; only the fields of the types translated are read.
#[derive(Debug, Deserialize)]
struct BlockView<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    source: Option<SourceView<'a>>,
    #[serde(default, borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    name: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    input: Option<&'a RawValue>,
    #[serde(default, borrow)]
    tool_use_id: Option<Cow<'a, str>>,
    /// A tool result's content: a string or blocks.
    #[serde(default, borrow)]
    content: Option<&'a RawValue>,
}

#[derive(Debug, Deserialize)]
struct SourceView<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    media_type: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    data: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    url: Option<Cow<'a, str>>,
}

#[derive(Debug, Deserialize)]
struct ToolView<'a> {
    /// Absent or `custom` for client tools; server tools have their own.
    #[serde(rename = "type", default, borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(default, borrow)]
    description: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    input_schema: Option<&'a RawValue>,
}

#[derive(Debug, Deserialize)]
struct ToolChoiceView<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    name: Option<Cow<'a, str>>,
    #[serde(default)]
    disable_parallel_tool_use: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct MetadataView<'a> {
    #[serde(default, borrow)]
    user_id: Option<Cow<'a, str>>,
}

/// A string or a list of blocks.
enum Content<'a> {
    Text(Cow<'a, str>),
    Blocks(Vec<BlockView<'a>>),
}

/// Reads message or tool-result `content` (or `system`).
fn content<'a>(raw: &'a RawValue, at: &str) -> Result<Content<'a>, ProviderError> {
    let json = raw.get();
    let parsed = match json.trim_start().as_bytes().first() {
        Some(b'"') => serde_json::from_str(json).map(Content::Text),
        Some(b'[') => serde_json::from_str(json).map(Content::Blocks),
        _ => {
            return Err(invalid(
                format!("{at}: must be a string or a list of content blocks"),
                at,
            ));
        }
    };
    parsed.map_err(|error| invalid(format!("{at}: {error}"), at))
}

/// The OpenAI request, as sent.
#[derive(Debug, Serialize)]
struct ChatRequest<'a> {
    model: &'a str,
    messages: Vec<Message<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    stop: Vec<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptions>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<Tool<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<ToolChoice<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parallel_tool_calls: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<Cow<'a, str>>,
}

#[derive(Debug, Serialize)]
struct StreamOptions {
    include_usage: bool,
}

#[derive(Debug, Serialize)]
struct Message<'a> {
    role: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<MessageContent<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<ToolCall<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_call_id: Option<Cow<'a, str>>,
}

impl<'a> Message<'a> {
    fn new(role: &'static str, content: Option<MessageContent<'a>>) -> Message<'a> {
        Message {
            role,
            content,
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
enum MessageContent<'a> {
    Text(Cow<'a, str>),
    Parts(Vec<Part<'a>>),
}

#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Part<'a> {
    Text { text: Cow<'a, str> },
    ImageUrl { image_url: ImageUrl<'a> },
}

#[derive(Debug, Serialize)]
struct ImageUrl<'a> {
    url: Cow<'a, str>,
}

#[derive(Debug, Serialize)]
struct ToolCall<'a> {
    id: Cow<'a, str>,
    #[serde(rename = "type")]
    kind: &'static str,
    function: FunctionCall<'a>,
}

#[derive(Debug, Serialize)]
struct FunctionCall<'a> {
    name: Cow<'a, str>,
    /// OpenAI carries the input object as a JSON string.
    arguments: &'a str,
}

#[derive(Debug, Serialize)]
struct Tool<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    function: FunctionDefinition<'a>,
}

#[derive(Debug, Serialize)]
struct FunctionDefinition<'a> {
    name: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<&'a RawValue>,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
enum ToolChoice<'a> {
    Mode(&'static str),
    Named {
        #[serde(rename = "type")]
        kind: &'static str,
        function: NamedFunction<'a>,
    },
}

#[derive(Debug, Serialize)]
struct NamedFunction<'a> {
    name: Cow<'a, str>,
}

/// Translates the client's Messages request into an OpenAI chat request for
/// `upstream_model`. Streams ask for usage (`stream_options.include_usage`)
/// so every token is accounted for.
pub fn to_chat_request(
    body: &[u8],
    upstream_model: &str,
    stream: bool,
) -> Result<Vec<u8>, ProviderError> {
    let request: MessagesView = serde_json::from_slice(body).map_err(|error| {
        ProviderError::new(
            ErrorCode::InvalidRequest,
            format!("the request could not be translated for this model: {error}"),
        )
    })?;
    let mut messages = Vec::with_capacity(request.messages.len() + 1);
    if let Some(system) = request.system {
        let text = match content(system, "system")? {
            Content::Text(text) => text,
            Content::Blocks(blocks) => Cow::Owned(join_text(blocks, "system")?),
        };
        if !text.is_empty() {
            messages.push(Message::new("system", Some(MessageContent::Text(text))));
        }
    }
    for (i, turn) in request.messages.iter().enumerate() {
        let at = format!("messages.{i}.content");
        let blocks = match content(turn.content, &at)? {
            Content::Text(text) => {
                let role = role(&turn.role, i)?;
                messages.push(Message::new(role, Some(MessageContent::Text(text))));
                continue;
            }
            Content::Blocks(blocks) => blocks,
        };
        match role(&turn.role, i)? {
            "user" => user_turn(blocks, &at, &mut messages)?,
            _ => messages.push(assistant_turn(blocks, &at)?),
        }
    }
    let tools = request
        .tools
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(i, tool)| translate_tool(tool, i))
        .collect::<Result<Vec<_>, _>>()?;
    let (tool_choice, parallel_tool_calls) = match (&request.tool_choice, tools.is_empty()) {
        (Some(choice), false) => translate_tool_choice(choice),
        _ => (None, None),
    };
    let chat = ChatRequest {
        model: upstream_model,
        messages,
        max_tokens: request.max_tokens,
        stop: request.stop_sequences.unwrap_or_default(),
        temperature: request.temperature,
        top_p: request.top_p,
        stream,
        stream_options: stream.then_some(StreamOptions {
            include_usage: true,
        }),
        tools,
        tool_choice,
        parallel_tool_calls,
        user: request.metadata.and_then(|metadata| metadata.user_id),
    };
    serde_json::to_vec(&chat)
        .map_err(|_| ProviderError::new(ErrorCode::Internal, "could not encode the request"))
}

fn role(role: &str, i: usize) -> Result<&'static str, ProviderError> {
    match role {
        "user" => Ok("user"),
        "assistant" => Ok("assistant"),
        other => Err(invalid(
            format!("messages.{i}.role: {other:?} is not 'user' or 'assistant'"),
            format!("messages.{i}.role"),
        )),
    }
}

/// A user turn: its tool results as `tool` messages first, then the rest.
fn user_turn<'a>(
    blocks: Vec<BlockView<'a>>,
    at: &str,
    messages: &mut Vec<Message<'a>>,
) -> Result<(), ProviderError> {
    let mut parts = Vec::new();
    for (j, block) in blocks.into_iter().enumerate() {
        let at = format!("{at}.{j}");
        match block.kind.as_ref() {
            "text" => {
                if let Some(text) = block.text.filter(|text| !text.is_empty()) {
                    parts.push(Part::Text { text });
                }
            }
            "image" => parts.push(Part::ImageUrl {
                image_url: image_url(block.source, &at)?,
            }),
            "document" => parts.push(Part::Text {
                text: document_text(block.source, &at)?,
            }),
            "tool_result" => {
                let text = match block.content {
                    None => Cow::Borrowed(""),
                    Some(raw) => match content(raw, &format!("{at}.content"))? {
                        Content::Text(text) => text,
                        Content::Blocks(blocks) => {
                            Cow::Owned(join_text(blocks, &format!("{at}.content"))?)
                        }
                    },
                };
                messages.push(Message {
                    role: "tool",
                    content: Some(MessageContent::Text(text)),
                    tool_calls: Vec::new(),
                    tool_call_id: Some(block.tool_use_id.unwrap_or_default()),
                });
            }
            kind => return Err(unsupported_block(kind, &at)),
        }
    }
    if !parts.is_empty() {
        messages.push(Message::new("user", Some(parts_content(parts))));
    }
    Ok(())
}

fn assistant_turn<'a>(blocks: Vec<BlockView<'a>>, at: &str) -> Result<Message<'a>, ProviderError> {
    let mut text: Option<Cow<'a, str>> = None;
    let mut tool_calls = Vec::new();
    for (j, block) in blocks.into_iter().enumerate() {
        match block.kind.as_ref() {
            "text" => {
                let piece = block.text.unwrap_or_default();
                text = Some(match text {
                    None => piece,
                    Some(before) => Cow::Owned(format!("{before}{piece}")),
                });
            }
            "tool_use" => tool_calls.push(ToolCall {
                id: block.id.unwrap_or_default(),
                kind: "function",
                function: FunctionCall {
                    name: block.name.unwrap_or_default(),
                    arguments: block.input.map_or("{}", RawValue::get),
                },
            }),
            "thinking" | "redacted_thinking" => {}
            kind => return Err(unsupported_block(kind, &format!("{at}.{j}"))),
        }
    }
    // OpenAI wants `content` present, null when only tools were called.
    let content = match (text, tool_calls.is_empty()) {
        (Some(text), _) => Some(MessageContent::Text(text)),
        (None, true) => Some(MessageContent::Text(Cow::Borrowed(""))),
        (None, false) => None,
    };
    Ok(Message {
        role: "assistant",
        content,
        tool_calls,
        tool_call_id: None,
    })
}

/// A lone text part as a plain string, the form every server accepts.
fn parts_content(mut parts: Vec<Part<'_>>) -> MessageContent<'_> {
    if parts.len() == 1
        && matches!(parts[0], Part::Text { .. })
        && let Some(Part::Text { text }) = parts.pop()
    {
        return MessageContent::Text(text);
    }
    MessageContent::Parts(parts)
}

/// The text of text-only blocks (`system`, a tool result's content).
fn join_text(blocks: Vec<BlockView<'_>>, at: &str) -> Result<String, ProviderError> {
    let mut text = String::new();
    for (j, block) in blocks.into_iter().enumerate() {
        match (block.kind.as_ref(), block.text) {
            ("text", Some(piece)) => {
                if !text.is_empty() && !piece.is_empty() {
                    text.push_str("\n\n");
                }
                text.push_str(&piece);
            }
            (kind, _) => return Err(unsupported_block(kind, &format!("{at}.{j}"))),
        }
    }
    Ok(text)
}

/// `base64` sources become data URLs; `url` sources pass as they are.
fn image_url<'a>(source: Option<SourceView<'a>>, at: &str) -> Result<ImageUrl<'a>, ProviderError> {
    let source = source.ok_or_else(|| invalid(format!("{at}.source: Field required"), at))?;
    match (source.kind.as_ref(), source.url, source.data) {
        ("url", Some(url), _) => Ok(ImageUrl { url }),
        ("base64", _, Some(data)) => {
            let media_type = source.media_type.unwrap_or(Cow::Borrowed("image/png"));
            Ok(ImageUrl {
                url: Cow::Owned(format!("data:{media_type};base64,{data}")),
            })
        }
        (kind, ..) => Err(invalid(
            format!("{at}.source: image source {kind:?} is not supported by this model"),
            at,
        )),
    }
}

/// Plain-text documents are text; PDFs and others have no OpenAI chat
/// equivalent every server understands.
fn document_text<'a>(
    source: Option<SourceView<'a>>,
    at: &str,
) -> Result<Cow<'a, str>, ProviderError> {
    match source {
        Some(SourceView {
            kind,
            data: Some(data),
            ..
        }) if kind == "text" => Ok(data),
        _ => Err(invalid(
            format!("{at}: only plain-text documents are supported by this model"),
            at,
        )),
    }
}

fn unsupported_block(kind: &str, at: &str) -> ProviderError {
    invalid(
        format!("{at}: content blocks of type {kind:?} are not supported by this model"),
        at,
    )
}

fn translate_tool(tool: ToolView<'_>, i: usize) -> Result<Tool<'_>, ProviderError> {
    match tool.kind.as_deref() {
        None | Some("custom") => {}
        Some(kind) => {
            return Err(invalid(
                format!("tools.{i}: server tools ({kind:?}) are not supported by this model"),
                "tools",
            ));
        }
    }
    Ok(Tool {
        kind: "function",
        function: FunctionDefinition {
            name: tool.name,
            description: tool.description,
            parameters: tool.input_schema,
        },
    })
}

fn translate_tool_choice<'a>(
    choice: &ToolChoiceView<'a>,
) -> (Option<ToolChoice<'a>>, Option<bool>) {
    let single = (choice.disable_parallel_tool_use == Some(true)).then_some(false);
    let choice = match choice.kind.as_ref() {
        "any" => ToolChoice::Mode("required"),
        "none" => return (Some(ToolChoice::Mode("none")), None),
        "tool" => ToolChoice::Named {
            kind: "function",
            function: NamedFunction {
                name: choice.name.clone().unwrap_or_default(),
            },
        },
        // "auto", and choices Anthropic may add: OpenAI's default.
        _ => ToolChoice::Mode("auto"),
    };
    (Some(choice), single)
}

fn invalid(message: String, param: impl Into<String>) -> ProviderError {
    let mut error = ProviderError::new(ErrorCode::InvalidRequest, message);
    error.param = Some(param.into());
    error
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn translate(request: Value, stream: bool) -> Value {
        let body =
            to_chat_request(request.to_string().as_bytes(), "gpt-up", stream).expect("translates");
        serde_json::from_slice(&body).expect("json")
    }

    #[test]
    fn conversation_with_tools_images_and_system_blocks() {
        let request = json!({
            "model": "claude-alias",
            "max_tokens": 256,
            "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}},
                       {"type": "text", "text": "Use tools."}],
            "stop_sequences": ["END"],
            "temperature": 0.5,
            "top_k": 5,
            "thinking": {"type": "enabled", "budget_tokens": 1024},
            "metadata": {"user_id": "u-1"},
            "tools": [{"name": "get_weather", "description": "Weather",
                       "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "Weather in Paris?"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "QUJD"}}]},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "Call the tool.", "signature": "c2ln"},
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]},
                {"role": "user", "content": [
                    {"type": "text", "text": "Thanks"},
                    {"type": "tool_result", "tool_use_id": "toolu_1",
                     "content": [{"type": "text", "text": "18°C"}]}]},
            ],
        });
        assert_eq!(
            translate(request, true),
            json!({
                "model": "gpt-up",
                "max_tokens": 256,
                "stop": ["END"],
                "temperature": 0.5,
                "stream": true,
                "stream_options": {"include_usage": true},
                "user": "u-1",
                "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
                "tool_choice": "required",
                "parallel_tool_calls": false,
                "messages": [
                    {"role": "system", "content": "Be brief.\n\nUse tools."},
                    {"role": "user", "content": [
                        {"type": "text", "text": "Weather in Paris?"},
                        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,QUJD"}}]},
                    {"role": "assistant", "content": "Checking.", "tool_calls": [
                        {"id": "toolu_1", "type": "function",
                         "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
                    {"role": "tool", "tool_call_id": "toolu_1", "content": "18°C"},
                    {"role": "user", "content": "Thanks"},
                ],
            })
        );
    }

    #[test]
    fn plain_strings_and_named_tool_choice() {
        let request = json!({
            "model": "m", "max_tokens": 5, "system": "Hi",
            "tools": [{"name": "f", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "tool", "name": "f"},
            "messages": [{"role": "user", "content": "Hello"},
                         {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}]}],
        });
        let chat = translate(request, false);
        assert_eq!(
            chat["messages"],
            json!([
                {"role": "system", "content": "Hi"},
                {"role": "user", "content": "Hello"},
                {"role": "assistant", "tool_calls": [{"id": "t", "type": "function",
                    "function": {"name": "f", "arguments": "{}"}}]},
            ])
        );
        assert_eq!(
            chat["tool_choice"],
            json!({"type": "function", "function": {"name": "f"}})
        );
        assert!(chat.get("stream").is_none());
        assert!(chat.get("stream_options").is_none());
    }

    #[test]
    fn what_cannot_be_translated_is_refused_by_name() {
        for (request, message) in [
            (
                json!({"model": "m", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]}),
                "messages.0.role",
            ),
            (
                json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": 5}]}),
                "messages.0.content: must be a string",
            ),
            (
                json!({"model": "m", "max_tokens": 5, "tools": [{"type": "web_search_20250305", "name": "web_search"}],
                       "messages": [{"role": "user", "content": "x"}]}),
                "server tools",
            ),
            (
                json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [
                    {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "x"}}]}]}),
                "plain-text documents",
            ),
        ] {
            let error =
                to_chat_request(request.to_string().as_bytes(), "m", false).expect_err("refused");
            assert_eq!(error.code, ErrorCode::InvalidRequest);
            assert!(error.message.contains(message), "{}", error.message);
        }
    }
}
