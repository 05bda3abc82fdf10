//! OpenAI chat completion request -> Anthropic Messages request.

use std::borrow::Cow;

use llmgw_proto::ErrorCode;
use serde_json::value::RawValue;

use super::ProviderError;
use super::messages::{
    Block, ImageSource, MessagesRequest, Metadata, Schema, Tool, ToolChoice, Turn,
};
use crate::catalog::Deployment;
use crate::provider::UpstreamRequest;
use crate::provider::chat_request::{
    ChatRequestView, ContentView, Stop, ToolCallView, ToolChoiceView, ToolView,
};

/// Anthropic requires `max_tokens`; OpenAI clients often leave it out.
const DEFAULT_MAX_TOKENS: u64 = 4096;

/// Anthropic's `temperature` range is 0..1, OpenAI's 0..2.
const MAX_TEMPERATURE: f64 = 1.0;

/// Translates the client's OpenAI request for an Anthropic `deployment`.
///
/// System and developer messages, wherever they appear, become the
/// top-level `system` (joined by blank lines); consecutive messages of one
/// role are merged, because Anthropic requires user and assistant turns to
/// alternate (tool results are user turns). `temperature` is passed through,
/// not rescaled, and clamped to Anthropic's maximum of 1.0: the values
/// people actually use (0 to 1) then mean the same on both APIs.
///
/// Fields without an Anthropic equivalent are dropped, not forwarded: unlike
/// OpenAI-compatible servers, Anthropic rejects unknown fields, so passing
/// them on would turn a harmless OpenAI option (`seed`, `n`, `logprobs`,
/// `response_format`, `presence_penalty`, `stream_options`,
/// `reasoning_effort`...) into a 400. `ChatRequestView` lists what is read.
pub fn build_request(
    client_body: &[u8],
    deployment: &Deployment,
    stream: bool,
) -> Result<UpstreamRequest, ProviderError> {
    translate(client_body, &deployment.upstream_model, stream)
}

/// [`build_request`] without the deployment, which is all it needs of it.
fn translate(
    client_body: &[u8],
    upstream_model: &str,
    stream: bool,
) -> Result<UpstreamRequest, ProviderError> {
    let chat: ChatRequestView = serde_json::from_slice(client_body).map_err(|error| {
        ProviderError::new(
            ErrorCode::InvalidRequest,
            format!("the request could not be translated for this model: {error}"),
        )
    })?;
    let mut system = String::new();
    let mut turns: Vec<Turn<'_>> = Vec::with_capacity(chat.messages.len());
    for (i, message) in chat.messages.into_iter().enumerate() {
        let (role, blocks) = match message.role.as_ref() {
            "system" | "developer" => {
                let text = system_text(message.content, i)?;
                if !system.is_empty() && !text.is_empty() {
                    system.push_str("\n\n");
                }
                system.push_str(&text);
                continue;
            }
            "user" => ("user", content_blocks(message.content, i)?),
            "assistant" => {
                let mut blocks = content_blocks(message.content, i)?;
                for (j, call) in message.tool_calls.into_iter().flatten().enumerate() {
                    blocks.push(tool_use(call, i, j)?);
                }
                ("assistant", blocks)
            }
            "tool" => {
                let tool_use_id = message.tool_call_id.ok_or_else(|| {
                    invalid(
                        format!("messages[{i}].tool_call_id is required for a tool message"),
                        format!("messages[{i}].tool_call_id"),
                    )
                })?;
                let content = content_blocks(message.content, i)?;
                let result = Block::ToolResult {
                    tool_use_id,
                    content,
                };
                ("user", vec![result])
            }
            other => {
                return Err(invalid(
                    format!("messages[{i}].role {other:?} is not supported by this model"),
                    format!("messages[{i}].role"),
                ));
            }
        };
        push_turn(&mut turns, role, blocks);
    }

    let tools = chat
        .tools
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(i, tool)| translate_tool(tool, i))
        .collect::<Result<Vec<_>, _>>()?;
    let request = MessagesRequest {
        model: upstream_model,
        max_tokens: chat
            .max_completion_tokens
            .or(chat.max_tokens)
            .unwrap_or(DEFAULT_MAX_TOKENS),
        system,
        messages: turns,
        stop_sequences: match chat.stop {
            None => Vec::new(),
            Some(Stop::One(stop)) => vec![stop],
            Some(Stop::Many(stops)) => stops,
        },
        temperature: chat.temperature.map(|t| t.min(MAX_TEMPERATURE)),
        top_p: chat.top_p,
        stream,
        tool_choice: tool_choice(chat.tool_choice, chat.parallel_tool_calls, &tools),
        tools,
        metadata: chat.user.map(|user_id| Metadata { user_id }),
    };
    let body = serde_json::to_vec(&request)
        .map_err(|_| ProviderError::new(ErrorCode::Internal, "could not encode the request"))?;
    Ok(UpstreamRequest { body })
}

fn invalid(message: String, param: String) -> ProviderError {
    let mut error = ProviderError::new(ErrorCode::InvalidRequest, message);
    error.param = Some(param);
    error
}

/// Appends a turn, merging it into the previous one if the role repeats.
/// Turns without content are skipped: Anthropic rejects empty turns.
/// Anthropic also wants a turn's tool results before its other content, so
/// a tool result merged after user text moves ahead of it.
fn push_turn<'a>(turns: &mut Vec<Turn<'a>>, role: &'static str, blocks: Vec<Block<'a>>) {
    if blocks.is_empty() {
        return;
    }
    let Some(last) = turns.last_mut().filter(|last| last.role == role) else {
        turns.push(Turn {
            role,
            content: blocks,
        });
        return;
    };
    for block in blocks {
        if matches!(block, Block::ToolResult { .. }) {
            let results = last
                .content
                .iter()
                .take_while(|block| matches!(block, Block::ToolResult { .. }))
                .count();
            last.content.insert(results, block);
        } else {
            last.content.push(block);
        }
    }
}

fn system_text(content: Option<ContentView<'_>>, i: usize) -> Result<Cow<'_, str>, ProviderError> {
    Ok(match content {
        None => Cow::Borrowed(""),
        Some(ContentView::Text(text)) => text,
        Some(ContentView::Parts(parts)) => {
            let mut text = String::new();
            for (j, part) in parts.into_iter().enumerate() {
                match (part.kind.as_ref(), part.text) {
                    ("text", Some(part)) => text.push_str(&part),
                    (kind, _) => {
                        return Err(invalid(
                            format!(
                                "messages[{i}].content[{j}]: a system message may only hold text, not {kind:?}"
                            ),
                            format!("messages[{i}].content"),
                        ));
                    }
                }
            }
            Cow::Owned(text)
        }
    })
}

/// Text and image content as Anthropic blocks; empty text is left out
/// (Anthropic rejects empty text blocks).
fn content_blocks<'a>(
    content: Option<ContentView<'a>>,
    i: usize,
) -> Result<Vec<Block<'a>>, ProviderError> {
    let parts = match content {
        None => return Ok(Vec::new()),
        Some(ContentView::Text(text)) => {
            if text.is_empty() {
                return Ok(Vec::new());
            }
            return Ok(vec![Block::Text { text }]);
        }
        Some(ContentView::Parts(parts)) => parts,
    };
    let mut blocks = Vec::with_capacity(parts.len());
    for (j, part) in parts.into_iter().enumerate() {
        match (part.kind.as_ref(), part.text, part.image_url) {
            ("text", Some(text), _) => {
                if !text.is_empty() {
                    blocks.push(Block::Text { text });
                }
            }
            ("image_url", _, Some(image)) => blocks.push(Block::Image {
                source: image_source(image.url, i, j)?,
            }),
            (kind, _, _) => {
                return Err(invalid(
                    format!(
                        "messages[{i}].content[{j}]: content of type {kind:?} is not supported by this model"
                    ),
                    format!("messages[{i}].content"),
                ));
            }
        }
    }
    Ok(blocks)
}

/// `data:<media type>;base64,<data>` or an http(s) URL.
fn image_source(url: Cow<'_, str>, i: usize, j: usize) -> Result<ImageSource<'_>, ProviderError> {
    if url.starts_with("https://") || url.starts_with("http://") {
        return Ok(ImageSource::Url { url });
    }
    let parts = match url {
        // Borrowed from the client's body: the base64 data is not copied.
        Cow::Borrowed(url) => split_data_url(url)
            .map(|(media_type, data)| (Cow::Borrowed(media_type), Cow::Borrowed(data))),
        // The parser already copied it (the URL had JSON escapes; rare).
        Cow::Owned(url) => split_data_url(&url).map(|(media_type, data)| {
            (
                Cow::Owned(media_type.to_owned()),
                Cow::Owned(data.to_owned()),
            )
        }),
    };
    let (media_type, data) = parts.ok_or_else(|| {
        invalid(
            format!("messages[{i}].content[{j}].image_url.url must be an http(s) URL or a base64 data URL"),
            format!("messages[{i}].content"),
        )
    })?;
    Ok(ImageSource::Base64 { media_type, data })
}

fn split_data_url(url: &str) -> Option<(&str, &str)> {
    let (media_type, data) = url.strip_prefix("data:")?.split_once(";base64,")?;
    (!media_type.is_empty()).then_some((media_type, data))
}

/// An assistant tool call. OpenAI carries the arguments as a JSON string;
/// Anthropic wants the object itself.
fn tool_use<'a>(call: ToolCallView<'a>, i: usize, j: usize) -> Result<Block<'a>, ProviderError> {
    let arguments = call.function.arguments.trim();
    let arguments = if arguments.is_empty() {
        "{}"
    } else {
        arguments
    };
    let input = serde_json::from_str::<Box<RawValue>>(arguments)
        .ok()
        .filter(|input| input.get().starts_with('{'))
        .ok_or_else(|| {
            invalid(
                format!("messages[{i}].tool_calls[{j}].function.arguments must be a JSON object"),
                format!("messages[{i}].tool_calls"),
            )
        })?;
    Ok(Block::ToolUse {
        id: call.id,
        name: call.function.name,
        input,
    })
}

fn translate_tool(tool: ToolView<'_>, i: usize) -> Result<Tool<'_>, ProviderError> {
    let function = match (tool.kind.as_deref(), tool.function) {
        (None | Some("function"), Some(function)) => function,
        _ => {
            return Err(invalid(
                format!("tools[{i}]: only function tools are supported by this model"),
                "tools".to_owned(),
            ));
        }
    };
    Ok(Tool {
        name: function.name,
        description: function.description,
        input_schema: match function.parameters {
            Some(schema) => Schema::Given(schema),
            None => Schema::NoParameters {
                kind: "object",
                properties: serde_json::Map::new(),
            },
        },
    })
}

/// `tool_choice` only makes sense with tools, and Anthropic rejects it
/// without them. `parallel_tool_calls: false` has no field of its own in
/// Anthropic: it is a flag of the tool choice.
fn tool_choice<'a>(
    choice: Option<ToolChoiceView<'a>>,
    parallel_tool_calls: Option<bool>,
    tools: &[Tool<'_>],
) -> Option<ToolChoice<'a>> {
    if tools.is_empty() {
        return None;
    }
    let single = parallel_tool_calls == Some(false);
    let (kind, name) = match choice {
        None if !single => return None,
        None => ("auto", None),
        Some(ToolChoiceView::Named { function }) => ("tool", Some(function.name)),
        Some(ToolChoiceView::Mode(mode)) => match mode.as_ref() {
            "none" => ("none", None),
            "required" => ("any", None),
            // "auto", and modes OpenAI may add: Anthropic's default.
            _ => ("auto", None),
        },
    };
    Some(ToolChoice {
        kind,
        name,
        disable_parallel_tool_use: single && kind != "none",
    })
}

#[cfg(test)]
mod tests;
