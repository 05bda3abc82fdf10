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

/// Checks `body` (already validated) against `policy`; returns the verdict
/// and the audit events of every hit.
pub fn check(policy: &Policy, body: &[u8], context: AuditContext) -> (Verdict, AuditEvents) {
    let mut events = AuditEvents::new(context);
    let Ok(mut request) = serde_json::from_slice::<Value>(body) else {
        // Validation parsed it already; a body that no longer parses is not
        // ours to forward either way.
        return (Verdict::Clean, events);
    };
    let mut redactions = Vec::new();
    let mut blocked = None;
    for text in prompt_texts(&request) {
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

/// Applies the tenant's policy to the request body: `Ok` with the body to
/// forward (the same one, or rewritten), or the client's error. Records the
/// audit events of every hit.
pub async fn enforce(
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
        check(policy, &body, context)
    } else {
        let policy = std::sync::Arc::clone(policy);
        let scanned = body.clone();
        tokio::task::spawn_blocking(move || check(&policy, &scanned, context))
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
        .with_param("messages")),
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

#[cfg(test)]
mod tests;
