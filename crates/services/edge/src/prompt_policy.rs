//! The input content policy: the tenant's policy checks every text of the
//! prompt before anything leaves the edge (before quota, before the router).
//!
//! Checked: each message's `content` (a string, or the `text` of each
//! content part), whatever its role, and the `arguments` of each tool call
//! (`tool_calls[].function.arguments`, and the legacy `function_call`).
//! - `block`: 400 `content_policy_violation` naming the rule (never the
//!   text); nothing is reserved, sent or charged.
//! - `redact`: the forwarded body is rewritten, only the affected strings
//!   masked. A request without redactions is forwarded as the client's own
//!   bytes: a clean prompt pays for the scan, never for a rewrite.
//! - `flag`: audit only.
//!
//! Every hit is an audit event (the trail logs one line per hit, ids only),
//! blocked requests included.
//!
//! The same policy reads Anthropic Messages requests ([`Shape::Messages`]:
//! `system`, each message's text, tool results' text and every string in
//! a `tool_use` input) and embeddings requests ([`Shape::Embeddings`]: each
//! string of `input`).

use bytes::Bytes;
use llmgw_audit::{AuditContext, AuditEvents, AuditTrail};
use llmgw_policy::{Direction, Policy};
use llmgw_proto::ErrorCode;
use serde_json::Value;

use crate::error::ApiError;

/// Prompts larger than this are scanned on a blocking thread: scanning is
/// linear in the text, and megabytes of it must not stall an async worker.
const SCAN_INLINE_BYTES: usize = 256 * 1024;

/// One text of the prompt.
struct PromptText<'v> {
    /// For audit events: `messages[3].content[1].text`.
    location: String,
    /// For rewriting: a JSON pointer to the same string.
    pointer: String,
    text: &'v str,
}

/// The format of the request body being checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// OpenAI chat completions.
    Chat,
    /// Anthropic Messages.
    Messages,
    /// OpenAI embeddings.
    Embeddings,
}

/// What the check decided.
#[derive(Debug)]
pub enum Verdict {
    /// Forward the body as it came.
    Clean,
    /// Forward this body instead (redactions applied).
    Redacted(Bytes),
    /// Refuse the request: a `block` rule matched.
    Blocked { rule_id: String },
    /// The redacted body could not be written (never expected): refuse
    /// rather than forward the prompt unredacted.
    Unredactable,
}

/// Checks `body` (a request of `shape`, already validated) against
/// `policy`; returns the verdict and the audit events of every hit.
pub fn check_as(
    shape: Shape,
    policy: &Policy,
    body: &[u8],
    context: AuditContext,
) -> (Verdict, AuditEvents) {
    let mut events = AuditEvents::new(context);
    let Ok(mut request) = serde_json::from_slice::<Value>(body) else {
        // Validation parsed it already; a body that no longer parses is not
        // ours to forward either way.
        return (Verdict::Clean, events);
    };
    let mut redactions = Vec::new();
    let mut blocked = None;
    let texts = match shape {
        Shape::Chat => prompt_texts(&request),
        Shape::Messages => messages_texts(&request),
        Shape::Embeddings => embeddings_texts(&request),
    };
    for text in texts {
        let findings = policy.check(Direction::Input, text.text);
        if findings.is_empty() {
            continue;
        }
        events.add(Direction::Input, &text.location, &findings.hits);
        if blocked.is_none() {
            blocked = findings.blocking().map(|hit| hit.rule_id.to_string());
        }
        if let std::borrow::Cow::Owned(redacted) = findings.redact(text.text) {
            redactions.push((text.pointer, redacted));
        }
    }
    if let Some(rule_id) = blocked {
        return (Verdict::Blocked { rule_id }, events);
    }
    if redactions.is_empty() {
        return (Verdict::Clean, events);
    }
    for (pointer, redacted) in redactions {
        if let Some(slot) = request.pointer_mut(&pointer) {
            *slot = Value::String(redacted);
        }
    }
    match serde_json::to_vec(&request) {
        Ok(rewritten) => (Verdict::Redacted(Bytes::from(rewritten)), events),
        // Serialising a parsed value cannot fail; if it did, forwarding
        // the unredacted prompt is not an option.
        Err(_) => (Verdict::Unredactable, events),
    }
}

/// Applies the tenant's policy to the request body (of `shape`): `Ok` with
/// the body to forward (the same one, or rewritten), or the client's error.
/// Records the audit events of every hit.
pub async fn enforce(
    shape: Shape,
    policy: &std::sync::Arc<Policy>,
    audit: &AuditTrail,
    body: Bytes,
    context: AuditContext,
) -> Result<Bytes, ApiError> {
    if !audit.has_room() {
        return Err(ApiError::new(
            ErrorCode::Unavailable,
            "the audit spool is full (billing has been unreachable for long); retry later",
        ));
    }
    let (verdict, mut events) = if body.len() <= SCAN_INLINE_BYTES {
        check_as(shape, policy, &body, context)
    } else {
        let policy = std::sync::Arc::clone(policy);
        let scanned = body.clone();
        tokio::task::spawn_blocking(move || check_as(shape, &policy, &scanned, context))
            .await
            .map_err(|_| {
                ApiError::new(
                    ErrorCode::Internal,
                    "the gateway could not check the request",
                )
            })?
    };
    audit.record(events.take());
    match verdict {
        Verdict::Clean => Ok(body),
        Verdict::Redacted(rewritten) => Ok(rewritten),
        Verdict::Blocked { rule_id } => Err(ApiError::new(
            ErrorCode::ContentPolicyViolation,
            format!("This request was blocked by the content policy (rule `{rule_id}`)."),
        )
        .with_param(match shape {
            Shape::Chat | Shape::Messages => "messages",
            Shape::Embeddings => "input",
        })),
        Verdict::Unredactable => Err(ApiError::new(
            ErrorCode::Internal,
            "the gateway could not apply the content policy to the request",
        )),
    }
}

/// Every text of the request a policy checks, in message order.
fn prompt_texts(request: &Value) -> Vec<PromptText<'_>> {
    let mut texts = Vec::new();
    let Some(messages) = request.get("messages").and_then(Value::as_array) else {
        return texts;
    };
    for (m, message) in messages.iter().enumerate() {
        match message.get("content") {
            Some(Value::String(text)) => texts.push(PromptText {
                location: format!("messages[{m}].content"),
                pointer: format!("/messages/{m}/content"),
                text,
            }),
            Some(Value::Array(parts)) => {
                for (p, part) in parts.iter().enumerate() {
                    if let Some(Value::String(text)) = part.get("text") {
                        texts.push(PromptText {
                            location: format!("messages[{m}].content[{p}].text"),
                            pointer: format!("/messages/{m}/content/{p}/text"),
                            text,
                        });
                    }
                }
            }
            _ => {}
        }
        if let Some(calls) = message.get("tool_calls").and_then(Value::as_array) {
            for (c, call) in calls.iter().enumerate() {
                if let Some(Value::String(arguments)) = call.pointer("/function/arguments") {
                    texts.push(PromptText {
                        location: format!("messages[{m}].tool_calls[{c}].function.arguments"),
                        pointer: format!("/messages/{m}/tool_calls/{c}/function/arguments"),
                        text: arguments,
                    });
                }
            }
        }
        if let Some(Value::String(arguments)) = message.pointer("/function_call/arguments") {
            texts.push(PromptText {
                location: format!("messages[{m}].function_call.arguments"),
                pointer: format!("/messages/{m}/function_call/arguments"),
                text: arguments,
            });
        }
    }
    texts
}

/// Every text of an Anthropic Messages request a policy checks.
fn messages_texts(request: &Value) -> Vec<PromptText<'_>> {
    let mut texts = Vec::new();
    match request.get("system") {
        Some(Value::String(text)) => texts.push(PromptText {
            location: "system".to_owned(),
            pointer: "/system".to_owned(),
            text,
        }),
        Some(Value::Array(blocks)) => {
            for (b, block) in blocks.iter().enumerate() {
                if let Some(Value::String(text)) = block.get("text") {
                    texts.push(PromptText {
                        location: format!("system[{b}].text"),
                        pointer: format!("/system/{b}/text"),
                        text,
                    });
                }
            }
        }
        _ => {}
    }
    let Some(messages) = request.get("messages").and_then(Value::as_array) else {
        return texts;
    };
    for (m, message) in messages.iter().enumerate() {
        let at = (
            format!("messages[{m}].content"),
            format!("/messages/{m}/content"),
        );
        match message.get("content") {
            Some(Value::String(text)) => texts.push(PromptText {
                location: at.0,
                pointer: at.1,
                text,
            }),
            Some(Value::Array(blocks)) => message_blocks(blocks, &at, &mut texts),
            _ => {}
        }
    }
    texts
}

/// The texts of content blocks at `at` (location, pointer): text blocks,
/// tool results' content (a string or blocks), and the strings of a tool
/// call's input.
fn message_blocks<'v>(blocks: &'v [Value], at: &(String, String), texts: &mut Vec<PromptText<'v>>) {
    for (b, block) in blocks.iter().enumerate() {
        let here = (format!("{}[{b}]", at.0), format!("{}/{b}", at.1));
        if let Some(Value::String(text)) = block.get("text") {
            texts.push(PromptText {
                location: format!("{}.text", here.0),
                pointer: format!("{}/text", here.1),
                text,
            });
        }
        match block.get("content") {
            Some(Value::String(text)) => texts.push(PromptText {
                location: format!("{}.content", here.0),
                pointer: format!("{}/content", here.1),
                text,
            }),
            Some(Value::Array(inner)) => {
                let inner_at = (format!("{}.content", here.0), format!("{}/content", here.1));
                message_blocks(inner, &inner_at, texts);
            }
            _ => {}
        }
        if let Some(input) = block.get("input") {
            input_strings(
                input,
                format!("{}.input", here.0),
                format!("{}/input", here.1),
                texts,
            );
        }
    }
}

/// Every string inside a tool call's input object.
fn input_strings<'v>(
    value: &'v Value,
    location: String,
    pointer: String,
    texts: &mut Vec<PromptText<'v>>,
) {
    match value {
        Value::String(text) => texts.push(PromptText {
            location,
            pointer,
            text,
        }),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                input_strings(
                    item,
                    format!("{location}[{i}]"),
                    format!("{pointer}/{i}"),
                    texts,
                );
            }
        }
        Value::Object(fields) => {
            // The audit location numbers the fields (their names are the
            // client's text); the pointer names them, escaped.
            for (i, (key, item)) in fields.iter().enumerate() {
                let escaped = key.replace('~', "~0").replace('/', "~1");
                input_strings(
                    item,
                    format!("{location}.{{{i}}}"),
                    format!("{pointer}/{escaped}"),
                    texts,
                );
            }
        }
        _ => {}
    }
}

/// Every string of an embeddings request's `input`.
fn embeddings_texts(request: &Value) -> Vec<PromptText<'_>> {
    match request.get("input") {
        Some(Value::String(text)) => vec![PromptText {
            location: "input".to_owned(),
            pointer: "/input".to_owned(),
            text,
        }],
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| {
                item.as_str().map(|text| PromptText {
                    location: format!("input[{i}]"),
                    pointer: format!("/input/{i}"),
                    text,
                })
            })
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests;
