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
use llmgw_policy::{Hit, Policy, Scanned, StreamScanner};
use serde_json::{Value, json};

use crate::provider::ProviderError;
use crate::provider::chat_chunk::{ChunkView, DeltaView};
use rewrite::{chunk_bytes, released, rewrite};

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

mod completion;
mod rewrite;
#[cfg(test)]
mod tests;
