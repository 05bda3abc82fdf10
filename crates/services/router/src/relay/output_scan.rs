//! Content policy on answers. The router is where each chunk's text is
//! already decoded (Anthropic events translated, SSE framing and JSON
//! escapes undone), so one scanner here covers every provider protocol.
//!
//! Each text field of each choice (reasoning, content, the arguments of each
//! tool call) is its own stream with its own [`StreamScanner`]: a term split
//! across chunks is caught, and fields never run into each other. A chunk
//! whose texts come out of the scanners unchanged is forwarded as the
//! upstream wrote it (the usual case: no extra copy, no extra latency);
//! only a chunk with a hit, or with text held back because it could still
//! become a match, is rewritten (see [`OutputScan::chunk`]).

use std::sync::Arc;

use bytes::Bytes;
use llmgw_policy::{Action, Direction, Hit, Policy, Scanned, StreamScanner};
use serde_json::{Map, Value, json};

use crate::provider::ProviderError;
use crate::provider::chat_chunk::{ChunkView, DeltaView};
use crate::provider::upstream_error;

/// The finish reason of an answer a `block` rule cut.
pub const CONTENT_FILTER: &str = "content_filter";

/// One scanned text field of a choice. The order of the variants is the
/// order a model generates them in (reasoning, then content, then tool
/// calls one after another).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Field {
    Reasoning,
    Content,
    /// The arguments of tool call `index` (as the JSON text the model
    /// writes: `\uXXXX` escapes inside it are not decoded).
    Arguments(u32),
}

/// A hit, and where in the answer it was.
#[derive(Debug)]
pub struct Found {
    pub choice: u32,
    pub field: Field,
    pub hit: Hit,
}

impl Found {
    /// The audit event's `location`.
    pub fn location(&self) -> String {
        let choice = self.choice;
        match self.field {
            Field::Content => format!("choices[{choice}]"),
            Field::Reasoning => format!("choices[{choice}].reasoning_content"),
            Field::Arguments(call) => format!("choices[{choice}].tool_calls[{call}].arguments"),
        }
    }
}

/// What to send for one upstream chunk.
#[derive(Debug)]
pub enum Verdict {
    /// The chunk exactly as the upstream sent it.
    Pass,
    /// These chunks instead, in order (possibly none: all its text is held
    /// back and it carries nothing else).
    Replace(Vec<Bytes>),
}

struct FieldScan {
    choice: u32,
    field: Field,
    scanner: StreamScanner,
    /// Finished (nothing held); pushing reopens it.
    done: bool,
}

/// Text to put in one field of the rewritten chunk (`carried`: the chunk
/// had that field) or of a chunk sent before it (released by `finish`).
struct Piece {
    choice: u32,
    field: Field,
    text: String,
    changed: bool,
    carried: bool,
}

/// The output scan of one upstream attempt.
pub struct OutputScan {
    policy: Arc<Policy>,
    fields: Vec<FieldScan>,
    /// Choices seen so far, and whether each has its finish reason.
    choices: Vec<(u32, bool)>,
    found: Vec<Found>,
    blocked: bool,
}

impl OutputScan {
    pub fn new(policy: Arc<Policy>) -> OutputScan {
        OutputScan {
            policy,
            fields: Vec::new(),
            choices: Vec::new(),
            found: Vec::new(),
            blocked: false,
        }
    }

    /// A `block` rule matched: the answer ends here.
    pub fn blocked(&self) -> bool {
        self.blocked
    }

    /// The hits found since the last call, in order.
    pub fn take_found(&mut self) -> Vec<Found> {
        std::mem::take(&mut self.found)
    }

    /// Scans one OpenAI chunk (`view` is `raw` parsed). Text a scanner holds
    /// back goes out with the field's next text; a choice's finish reason
    /// releases the rest first, in the same chunk when it carries that field,
    /// else in a chunk of its own sent just before. After a `block`, the
    /// chunk keeps the text before the match and a last chunk with
    /// `finish_reason: content_filter` follows.
    pub fn chunk(&mut self, raw: &Bytes, view: &ChunkView<'_>) -> Result<Verdict, ProviderError> {
        if self.blocked {
            return Ok(Verdict::Replace(Vec::new()));
        }
        let mut pieces: Vec<Piece> = Vec::new();
        let mut cut = None;
        for choice in &view.choices {
            let index = choice.index;
            self.seen(index);
            if let Some(delta) = &choice.delta {
                for (field, text) in texts(delta) {
                    // A later field started: the earlier ones are complete,
                    // so what they hold goes out now, before it.
                    if self.finish_fields(index, Some(field), &mut pieces) {
                        cut = Some(index);
                        break;
                    }
                    let scanned = self.scanner(index, field).push(text);
                    let changed = scanned.text != text;
                    if self.take(index, field, scanned, changed, true, &mut pieces) {
                        cut = Some(index);
                        break;
                    }
                }
            }
            if cut.is_none()
                && choice.finish_reason.is_some()
                && self.finish_choice(index, &mut pieces)
            {
                cut = Some(index);
            }
            if cut.is_some() {
                break;
            }
        }
        if cut.is_none() && !pieces.iter().any(|piece| piece.changed) {
            return Ok(Verdict::Pass);
        }
        let mut out = Vec::new();
        if let Some(released) = self.released_chunk(view, &pieces) {
            out.push(released);
        }
        if cut.is_none() && !pieces.iter().any(|piece| piece.carried && piece.changed) {
            out.push(raw.clone());
        } else if let Some(rewritten) = rewrite(raw, &pieces, cut)? {
            out.push(rewritten);
        }
        if cut.is_some() {
            out.push(self.content_filter_chunk(&view.id, view.created, &view.model));
        }
        Ok(Verdict::Replace(out))
    }

    /// The stream ended without a finish reason for some choices: what
    /// their scanners still hold, as chunks to send before the closing one.
    /// After a block, the last of them is the `content_filter` chunk.
    pub fn finish_all(&mut self, id: &str, created: u64, model: &str) -> Vec<Bytes> {
        let open: Vec<u32> = self
            .choices
            .iter()
            .filter(|(_, finished)| !finished)
            .map(|(index, _)| *index)
            .collect();
        let mut pieces = Vec::new();
        let mut blocked = false;
        for index in open {
            if self.finish_choice(index, &mut pieces) {
                blocked = true;
                break;
            }
        }
        let mut out: Vec<Bytes> = released(id, created, model, &pieces).into_iter().collect();
        if blocked {
            out.push(self.content_filter_chunk(id, created, model));
        }
        out
    }

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

    fn seen(&mut self, index: u32) {
        if !self.choices.iter().any(|(seen, _)| *seen == index) {
            self.choices.push((index, false));
        }
    }

    fn scanner(&mut self, choice: u32, field: Field) -> &mut StreamScanner {
        let at = match self
            .fields
            .iter()
            .position(|scan| scan.choice == choice && scan.field == field)
        {
            Some(at) => at,
            None => {
                self.fields.push(FieldScan {
                    choice,
                    field,
                    scanner: self.policy.stream(),
                    done: false,
                });
                self.fields.len() - 1
            }
        };
        let scan = &mut self.fields[at];
        scan.done = false;
        &mut scan.scanner
    }

    /// Records what a scanner let through; true if it blocked.
    fn take(
        &mut self,
        choice: u32,
        field: Field,
        scanned: Scanned,
        changed: bool,
        carried: bool,
        pieces: &mut Vec<Piece>,
    ) -> bool {
        let Scanned {
            text,
            hits,
            blocked,
        } = scanned;
        for hit in hits {
            self.found.push(Found { choice, field, hit });
        }
        match pieces
            .iter_mut()
            .find(|piece| piece.choice == choice && piece.field == field)
        {
            Some(piece) => {
                piece.changed |= changed || !text.is_empty();
                piece.text.push_str(&text);
            }
            None => pieces.push(Piece {
                choice,
                field,
                text,
                changed,
                carried,
            }),
        }
        if blocked {
            self.blocked = true;
        }
        blocked
    }

    /// Releases what the scanners of `choice` hold; true if it blocked.
    fn finish_choice(&mut self, choice: u32, pieces: &mut Vec<Piece>) -> bool {
        if self.finish_fields(choice, None, pieces) {
            // Still open: the `content_filter` chunk ends it.
            return true;
        }
        if let Some(seen) = self.choices.iter_mut().find(|(index, _)| *index == choice) {
            seen.1 = true;
        }
        false
    }

    /// Finishes the open scanners of `choice` for fields before `before`
    /// (all of them: `None`); true if that blocked.
    fn finish_fields(
        &mut self,
        choice: u32,
        before: Option<Field>,
        pieces: &mut Vec<Piece>,
    ) -> bool {
        let mut at = 0;
        while at < self.fields.len() {
            let scan = &mut self.fields[at];
            at += 1;
            let earlier = before.is_none_or(|before| scan.field < before);
            if scan.choice != choice || scan.done || !earlier {
                continue;
            }
            scan.done = true;
            let field = scan.field;
            let scanned = scan.scanner.finish();
            if scanned.text.is_empty() && scanned.hits.is_empty() && !scanned.blocked {
                continue;
            }
            let changed = !scanned.text.is_empty() || scanned.blocked;
            if self.take(choice, field, scanned, changed, false, pieces) {
                return true;
            }
        }
        false
    }

    /// Text released for fields the chunk does not carry, in a chunk of its
    /// own (sent before it).
    fn released_chunk(&self, view: &ChunkView<'_>, pieces: &[Piece]) -> Option<Bytes> {
        released(&view.id, view.created, &view.model, pieces)
    }

    /// The last chunk of a cut answer: every choice still open ends with
    /// `content_filter`.
    fn content_filter_chunk(&mut self, id: &str, created: u64, model: &str) -> Bytes {
        let choices: Vec<Value> = self
            .choices
            .iter_mut()
            .filter(|(_, finished)| !*finished)
            .map(|(index, finished)| {
                *finished = true;
                json!({"index": *index, "delta": {}, "finish_reason": CONTENT_FILTER})
            })
            .collect();
        chunk_bytes(id, created, model, choices)
    }
}

/// The text fields of a delta, in generation order.
fn texts<'v>(delta: &'v DeltaView<'_>) -> impl Iterator<Item = (Field, &'v str)> {
    let reasoning = delta
        .reasoning_content
        .as_deref()
        .map(|text| (Field::Reasoning, text));
    let content = delta.content.as_deref().map(|text| (Field::Content, text));
    let arguments = delta.tool_calls.iter().flatten().filter_map(|call| {
        let arguments = call.function.as_ref()?.arguments.as_deref()?;
        Some((Field::Arguments(call.index), arguments))
    });
    reasoning
        .into_iter()
        .chain(content)
        .chain(arguments)
        .filter(|(_, text)| !text.is_empty())
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

fn released(id: &str, created: u64, model: &str, pieces: &[Piece]) -> Option<Bytes> {
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

fn chunk_bytes(id: &str, created: u64, model: &str, choices: Vec<Value>) -> Bytes {
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
fn rewrite(raw: &[u8], pieces: &[Piece], cut: Option<u32>) -> Result<Option<Bytes>, ProviderError> {
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

#[cfg(test)]
mod tests;
