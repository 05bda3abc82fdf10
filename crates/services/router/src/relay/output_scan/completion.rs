//! A whole (non-streaming) answer: every text field of every choice is
//! checked at once; nothing is held back.

use bytes::Bytes;
use llmgw_policy::{Action, Direction, Hit};
use serde_json::{Map, Value};

use super::{CONTENT_FILTER, Field, Found, OutputScan};
use crate::provider::ProviderError;
use crate::provider::upstream_error;

impl OutputScan {
    /// Scans a whole `chat.completion`: a `redact` hit is masked, a `block`
    /// hit cuts that choice's text at the match (and drops what it would
    /// have generated after it) with `finish_reason: content_filter`. The
    /// body is returned untouched when nothing changed.
    pub fn completion(&mut self, raw: Bytes) -> Result<Bytes, ProviderError> {
        let mut body: Value =
            serde_json::from_slice(&raw).map_err(|_| upstream_error::invalid_json())?;
        let mut changed = false;
        let choices = body
            .get_mut("choices")
            .and_then(Value::as_array_mut)
            .map(|choices| choices.iter_mut())
            .into_iter()
            .flatten();
        for choice in choices {
            if self.completion_choice(choice) {
                changed = true;
            }
        }
        if !changed {
            return Ok(raw);
        }
        serde_json::to_vec(&body).map(Bytes::from).map_err(|_| {
            ProviderError::new(
                llmgw_proto::ErrorCode::Internal,
                "could not encode the answer",
            )
        })
    }

    /// One choice of a completion; true if it was rewritten.
    fn completion_choice(&mut self, choice: &mut Value) -> bool {
        let index = choice
            .get("index")
            .and_then(Value::as_u64)
            .map_or(0, |index| u32::try_from(index).unwrap_or(u32::MAX));
        let Some(message) = choice.get_mut("message").and_then(Value::as_object_mut) else {
            return false;
        };
        let mut changed = false;
        let mut cut = false;
        for (field, slot) in message_fields(message) {
            let Some(text) = slot.as_str() else { continue };
            if cut {
                *slot = Value::String(String::new());
                continue;
            }
            let findings = self.policy.check(Direction::Output, text);
            if findings.is_empty() {
                continue;
            }
            let block = findings.blocking().map(|hit| (hit.start, hit.end));
            let new_text = match block {
                Some((start, _)) => masked(text, &findings.hits, start),
                None => findings.redact(text).into_owned(),
            };
            // Hits after the cut are in text nobody receives.
            for hit in findings.hits {
                let last = block.is_some() && hit.action == Action::Block;
                self.found.push(Found {
                    choice: index,
                    field,
                    hit,
                });
                if last {
                    break;
                }
            }
            if new_text != text {
                *slot = Value::String(new_text);
                changed = true;
            }
            if block.is_some() {
                cut = true;
                changed = true;
            }
        }
        if cut {
            self.blocked = true;
            if let Some(choice) = choice.as_object_mut() {
                choice.insert("finish_reason".to_owned(), Value::from(CONTENT_FILTER));
            }
        }
        if changed && let Some(choice) = choice.as_object_mut() {
            // Log probabilities carry the tokens' text: they would give the
            // masked or cut text away.
            choice.remove("logprobs");
        }
        changed
    }
}

/// The text fields of a whole message, in generation order.
fn message_fields(message: &mut Map<String, Value>) -> Vec<(Field, &mut Value)> {
    let mut fields = Vec::new();
    let mut calls = None;
    for (name, value) in message.iter_mut() {
        match name.as_str() {
            "reasoning_content" => fields.push((Field::Reasoning, value)),
            "content" => fields.push((Field::Content, value)),
            "tool_calls" => calls = Some(value),
            _ => {}
        }
    }
    fields.sort_by_key(|(field, _)| *field == Field::Content);
    if let Some(Value::Array(calls)) = calls {
        for (position, call) in calls.iter_mut().enumerate() {
            let index = call
                .get("index")
                .and_then(Value::as_u64)
                .unwrap_or(position as u64);
            if let Some(arguments) = call.pointer_mut("/function/arguments") {
                fields.push((
                    Field::Arguments(u32::try_from(index).unwrap_or(u32::MAX)),
                    arguments,
                ));
            }
        }
    }
    fields
}

/// `text[..end]` with the `redact` hits inside it masked.
fn masked(text: &str, hits: &[Hit], end: usize) -> String {
    let mut out = String::with_capacity(end);
    let mut at = 0;
    for hit in hits {
        if hit.action != Action::Redact || hit.start < at || hit.end > end {
            continue;
        }
        out.push_str(&text[at..hit.start]);
        out.push_str(&hit.mask);
        at = hit.end;
    }
    out.push_str(&text[at..end]);
    out
}
