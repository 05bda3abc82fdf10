//! Writing chunks: a chunk with its texts replaced by what the scanners let
//! through, the chunk carrying text released for fields a chunk does not
//! carry, and whether a rewritten chunk still says anything.

use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::{Field, Piece};
use crate::provider::ProviderError;
use crate::provider::upstream_error;

pub(super) fn released(id: &str, created: u64, model: &str, pieces: &[Piece]) -> Option<Bytes> {
    let mut choices: Vec<(u32, Map<String, Value>)> = Vec::new();
    for piece in pieces
        .iter()
        .filter(|piece| !piece.carried && !piece.text.is_empty())
    {
        let at = match choices.iter().position(|(index, _)| *index == piece.choice) {
            Some(at) => at,
            None => {
                choices.push((piece.choice, Map::new()));
                choices.len() - 1
            }
        };
        set_field(&mut choices[at].1, piece.field, &piece.text);
    }
    if choices.is_empty() {
        return None;
    }
    let choices = choices
        .into_iter()
        .map(|(index, delta)| json!({"index": index, "delta": delta, "finish_reason": null}))
        .collect();
    Some(chunk_bytes(id, created, model, choices))
}

pub(super) fn chunk_bytes(id: &str, created: u64, model: &str, choices: Vec<Value>) -> Bytes {
    let chunk = json!({
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": choices,
    });
    Bytes::from(chunk.to_string())
}

/// Puts `text` in `field` of `delta`, creating the tool call entry if need be.
fn set_field(delta: &mut Map<String, Value>, field: Field, text: &str) {
    match field {
        Field::Content => {
            delta.insert("content".to_owned(), Value::from(text));
        }
        Field::Reasoning => {
            delta.insert("reasoning_content".to_owned(), Value::from(text));
        }
        Field::Arguments(index) => {
            let calls = delta
                .entry("tool_calls")
                .or_insert_with(|| Value::Array(Vec::new()));
            let Value::Array(calls) = calls else { return };
            let call = match calls.iter().position(|call| {
                call.get("index").and_then(Value::as_u64) == Some(u64::from(index))
            }) {
                Some(at) => &mut calls[at],
                None => {
                    calls.push(json!({"index": index, "function": {}}));
                    let last = calls.len() - 1;
                    &mut calls[last]
                }
            };
            if let Some(function) = call
                .as_object_mut()
                .map(|call| call.entry("function").or_insert_with(|| json!({})))
                .and_then(Value::as_object_mut)
            {
                function.insert("arguments".to_owned(), Value::from(text));
            }
        }
    }
}

/// The chunk with its carried fields replaced by the scanners' text; after
/// a cut (`cut` = the blocked choice), choices after it are gone, fields it
/// did not get to are emptied and no finish reason is left (the
/// `content_filter` chunk follows). `None` when nothing is left to send.
pub(super) fn rewrite(
    raw: &[u8],
    pieces: &[Piece],
    cut: Option<u32>,
) -> Result<Option<Bytes>, ProviderError> {
    let mut chunk: Value =
        serde_json::from_slice(raw).map_err(|_| upstream_error::invalid_json())?;
    if let Some(choices) = chunk.get_mut("choices").and_then(Value::as_array_mut) {
        if let Some(blocked) = cut
            && let Some(at) = choices
                .iter()
                .position(|choice| choice_index(choice) == blocked)
        {
            choices.truncate(at + 1);
        }
        for choice in choices.iter_mut() {
            rewrite_choice(choice, pieces, cut);
        }
    }
    Ok(carries_anything(&chunk).then(|| Bytes::from(chunk.to_string())))
}

fn choice_index(choice: &Value) -> u32 {
    choice
        .get("index")
        .and_then(Value::as_u64)
        .map_or(0, |index| u32::try_from(index).unwrap_or(u32::MAX))
}

fn rewrite_choice(choice: &mut Value, pieces: &[Piece], cut: Option<u32>) {
    let index = choice_index(choice);
    let Some(choice) = choice.as_object_mut() else {
        return;
    };
    let mine: Vec<&Piece> = pieces
        .iter()
        .filter(|piece| piece.carried && piece.choice == index)
        .collect();
    if let Some(Value::Object(delta)) = choice.get_mut("delta") {
        if cut == Some(index) {
            // Fields the scan did not reach: generated after the match.
            empty_fields(delta);
        }
        for piece in &mine {
            set_field(delta, piece.field, &piece.text);
        }
    }
    if mine.iter().any(|piece| piece.changed) || cut == Some(index) {
        choice.remove("logprobs");
    }
    if cut == Some(index) {
        choice.insert("finish_reason".to_owned(), Value::Null);
    }
}

fn empty_fields(delta: &mut Map<String, Value>) {
    for name in ["content", "reasoning_content"] {
        if let Some(slot) = delta.get_mut(name)
            && slot.is_string()
        {
            *slot = Value::from("");
        }
    }
    if let Some(Value::Array(calls)) = delta.get_mut("tool_calls") {
        for call in calls {
            if let Some(slot) = call.pointer_mut("/function/arguments") {
                *slot = Value::from("");
            }
        }
    }
}

/// Whether a rewritten chunk still tells the client something: text, a
/// role, a tool call's id or name, a finish reason, usage, or any field
/// the scan does not know (forwarded as the upstream sent it).
fn carries_anything(chunk: &Value) -> bool {
    if chunk.get("usage").is_some_and(|usage| !usage.is_null()) {
        return true;
    }
    let Some(choices) = chunk.get("choices").and_then(Value::as_array) else {
        return false;
    };
    choices.iter().any(|choice| {
        if choice
            .get("finish_reason")
            .is_some_and(|reason| !reason.is_null())
        {
            return true;
        }
        let Some(delta) = choice.get("delta").and_then(Value::as_object) else {
            return false;
        };
        delta.iter().any(|(name, value)| match name.as_str() {
            "content" | "reasoning_content" => value.as_str().is_some_and(|text| !text.is_empty()),
            "tool_calls" => value
                .as_array()
                .is_some_and(|calls| calls.iter().any(tool_call_carries_anything)),
            _ => !value.is_null(),
        })
    })
}

fn tool_call_carries_anything(call: &Value) -> bool {
    let Some(call) = call.as_object() else {
        return false;
    };
    call.iter().any(|(name, value)| match name.as_str() {
        "index" => false,
        "function" => value.as_object().is_some_and(|function| {
            function.iter().any(|(name, value)| match name.as_str() {
                "arguments" => value.as_str().is_some_and(|text| !text.is_empty()),
                _ => !value.is_null(),
            })
        }),
        _ => !value.is_null(),
    })
}
