//! Scanning an answer as it streams.
//!
//! The scanner keeps only the text that could still become (part of) a
//! match, and rescans it with each new piece: where a word list's
//! automaton has a partial match (its anchored walk is still alive), a
//! trailing digit run, local part, domain or key prefix a detector could
//! still extend, a position from which a regex's automaton is still alive.
//! Everything before the earliest such position is final: its hits are
//! reported, its redactions applied, and it is released. A stream that
//! could never match is released at once, byte for byte.
//!
//! Release points are chosen so that rescanning from one gives the same
//! matches as scanning the whole answer (no match in progress spans them,
//! and a match that would straddle one moves it back to its start), so a
//! stream's hits and output equal [`Policy::check`] on the whole answer.

use std::sync::Arc;

use crate::hit::{self, Hit};
use crate::policy::Policy;
use crate::spec::{Action, Direction};

/// Released characters kept before the pending text, for what matches
/// are glued to (`\b`, a digit before a number) and for excerpts.
const CONTEXT_CHARS: usize = 16;

/// The most a stream holds back. Word terms, detectors and PEM blocks
/// (16 KiB) stay well below it; a regex that can stay alive forever
/// (`a.*b`) would otherwise hold the whole answer. Beyond it, text is
/// released even though such a regex might still match it.
pub const MAX_HOLD: usize = 64 * 1024;

/// Scans one answer as it streams: [`push`](Self::push) each piece of text
/// as it arrives and send what it returns. It holds back only text that
/// could still become part of a match.
pub struct StreamScanner {
    policy: Arc<Policy>,
    checks: bool,
    /// Context (released text kept for look-behind), then pending text.
    buf: String,
    /// Bytes of `buf` that are context.
    context: usize,
    /// Bytes of the answer released so far (the offset of pending text).
    released: usize,
    blocked: bool,
}

impl std::fmt::Debug for StreamScanner {
    /// Positions only, never the answer's text.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamScanner")
            .field("policy", &self.policy.name())
            .field("released", &self.released)
            .field("held_back", &self.held_back())
            .field("blocked", &self.blocked)
            .finish()
    }
}

/// What a [`StreamScanner`] lets through.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scanned {
    /// The text to send now (redactions applied); may be empty.
    pub text: String,
    /// Hits found in this step, offsets relative to the whole answer.
    pub hits: Vec<Hit>,
    /// A `block` rule matched: `text` ends before the match (and before a
    /// redaction overlapping it), and the answer must end here
    /// (`finish_reason: content_filter`). Nothing more is ever released.
    pub blocked: bool,
}

impl StreamScanner {
    pub(crate) fn new(policy: Arc<Policy>) -> StreamScanner {
        StreamScanner {
            checks: policy.checks(Direction::Output),
            policy,
            buf: String::new(),
            context: 0,
            released: 0,
            blocked: false,
        }
    }

    pub fn push(&mut self, text: &str) -> Scanned {
        if self.blocked || text.is_empty() {
            return Scanned::default();
        }
        if !self.checks {
            self.released += text.len();
            return Scanned {
                text: text.to_owned(),
                ..Scanned::default()
            };
        }
        self.buf.push_str(text);
        self.step(false)
    }

    /// The answer ended: check and release what was held back.
    pub fn finish(&mut self) -> Scanned {
        if self.blocked || self.buf.len() == self.context {
            return Scanned::default();
        }
        self.step(true)
    }

    /// Bytes currently held back.
    pub fn held_back(&self) -> usize {
        self.buf.len() - self.context
    }

    /// Whether a `block` rule has ended this answer.
    pub fn is_blocked(&self) -> bool {
        self.blocked
    }

    fn step(&mut self, at_end: bool) -> Scanned {
        let from = self.context;
        let window = self
            .policy
            .scan(Direction::Output, &self.buf, from, !at_end);
        let raw = window.hits;
        let mut cut = if at_end {
            self.buf.len()
        } else {
            window.hold.unwrap_or(self.buf.len())
        };
        if !at_end {
            // A match reaching the end of what arrived may still grow (a
            // combining mark joins its last character, a number its digits).
            for h in raw.iter().filter(|h| h.end == self.buf.len()) {
                cut = cut.min(h.start);
            }
        }
        if self.buf.len() - cut > MAX_HOLD {
            let mut forced = self.buf.len() - MAX_HOLD / 2;
            while !self.buf.is_char_boundary(forced) {
                forced -= 1;
            }
            cut = cut.max(forced);
        }
        // Never cut inside a match (it is not final yet) or inside a stretch
        // a restarted scan would read differently: hold from its start.
        let spans = raw
            .iter()
            .map(|h| (h.start, h.end))
            .chain(window.spans.iter().copied());
        while let Some(start) = spans
            .clone()
            .filter(|&(s, e)| from <= s && s < cut && cut < e)
            .map(|(s, _)| s)
            .min()
        {
            cut = start;
        }
        // `buf` starts at this offset of the answer.
        let base = self.released - from;
        let mut hits: Vec<Hit> = raw
            .into_iter()
            .filter(|h| h.end <= cut)
            .map(|h| self.policy.hit(h, base))
            .collect();
        hit::sort(&mut hits);
        let mut stop = base + cut;
        if let Some(block) = hits.iter().find(|h| h.action == Action::Block) {
            let block_start = block.start;
            stop = block_start;
            for (start, end, _) in hit::merged_redactions(&hits) {
                if start < stop && stop < end {
                    stop = start;
                }
            }
            hits.retain(|h| h.start <= block_start);
            self.blocked = true;
        }
        self.policy.add_excerpts(&self.buf, base, &mut hits);
        let released = &self.buf[from..stop - base];
        let text = hit::redact(released, &hits, self.released).into_owned();
        if self.blocked {
            self.buf = String::new();
            self.context = 0;
        } else {
            self.release(cut);
        }
        Scanned {
            text,
            hits,
            blocked: self.blocked,
        }
    }

    /// Drops `buf[..cut]` except the last few characters (kept as context).
    fn release(&mut self, cut: usize) {
        self.released += cut - self.context;
        let keep_from = self.buf[..cut]
            .char_indices()
            .rev()
            .take(CONTEXT_CHARS)
            .last()
            .map_or(cut, |(i, _)| i);
        self.buf.drain(..keep_from);
        self.context = cut - keep_from;
    }
}
