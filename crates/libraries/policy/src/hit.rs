//! What a check finds: hits, their keyed hashes and audit excerpts, and how
//! overlapping hits combine.
//!
//! Overlaps: every rule's matches are reported, overlapping or not. A
//! `block` hit wins over everything (the prompt is refused, the answer cut
//! before it). `redact` hits whose ranges overlap merge into one redaction
//! that covers their union and shows the mask of the first of them (the
//! earliest start, then the longest); touching but not overlapping ranges
//! stay separate. `flag` hits change nothing.

use std::borrow::Cow;
use std::sync::Arc;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::spec::{Action, RuleKind};

/// One match. Offsets are a byte range of the text checked (for a stream:
/// of the whole answer so far, as the upstream sent it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    pub rule_id: Arc<str>,
    pub kind: RuleKind,
    pub action: Action,
    /// What `redact` puts in place of the match.
    pub mask: Arc<str>,
    pub start: usize,
    pub end: usize,
    /// HMAC-SHA-256, keyed with the set's `match_hash_key`, of the
    /// normalised match (word lists: the normalised text, so `ＡＢＣ` and
    /// `abc` correlate; detectors: the value in canonical form, e.g. digits
    /// only; regexes: NFKC, lower case), as the first 32 hex digits
    /// (128 bits). Correlates repeated leaks of one value without storing
    /// it.
    pub match_hash: String,
    /// Only when the policy sets `audit_excerpts`: up to 16 characters
    /// either side of the match, the match itself replaced by the rule's
    /// mask and any other hit in the excerpt masked too. (For a stream, the
    /// text after the match is what had arrived when it was found.)
    pub excerpt: Option<String>,
}

/// What [`crate::Policy::check`] found.
///
/// Every rule's matches are reported, overlapping or not. A `block` hit
/// wins over everything (the prompt is refused; an answer is cut before
/// it). `redact` hits whose ranges overlap merge into one redaction that
/// covers their union and shows the mask of the first of them (earliest
/// start, then longest); touching ranges stay separate. `flag` hits change
/// nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Findings {
    /// In text order: by start, then longest first.
    pub hits: Vec<Hit>,
}

impl Findings {
    pub fn is_empty(&self) -> bool {
        self.hits.is_empty()
    }

    /// The earliest hit whose action is `block`, if any.
    pub fn blocking(&self) -> Option<&Hit> {
        self.hits.iter().find(|hit| hit.action == Action::Block)
    }

    /// `text` with every `redact` hit replaced by its mask, overlapping
    /// ones merged (borrowed when there is none).
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        redact(text, &self.hits, 0)
    }
}

/// `text` (which starts at offset `base` of the text the hits refer to)
/// with the redactions among `hits` (sorted by start) applied.
pub(crate) fn redact<'a>(text: &'a str, hits: &[Hit], base: usize) -> Cow<'a, str> {
    let mut ranges = merged_redactions(hits).peekable();
    if ranges.peek().is_none() {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (start, end, mask) in ranges {
        let (start, end) = (start - base, (end - base).min(text.len()));
        if start >= text.len() {
            break;
        }
        out.push_str(&text[at..start]);
        out.push_str(mask);
        at = end;
    }
    out.push_str(&text[at..]);
    Cow::Owned(out)
}

/// Redaction ranges with overlapping ones merged: (start, end, mask).
pub(crate) fn merged_redactions(hits: &[Hit]) -> impl Iterator<Item = (usize, usize, &str)> {
    let mut redactions = hits
        .iter()
        .filter(|h| h.action == Action::Redact)
        .peekable();
    std::iter::from_fn(move || {
        let first = redactions.next()?;
        let mut end = first.end;
        while let Some(next) = redactions.next_if(|next| next.start < end) {
            end = end.max(next.end);
        }
        Some((first.start, end, &*first.mask))
    })
}

/// Sorts hits into text order: by start, longest first, then rule order
/// (the order they were found in, kept by a stable sort).
pub(crate) fn sort(hits: &mut [Hit]) {
    hits.sort_by(|a, b| a.start.cmp(&b.start).then(b.end.cmp(&a.end)));
}

/// The keyed hash of matched values.
#[derive(Clone)]
pub(crate) struct MatchHasher {
    keyed: Hmac<Sha256>,
}

impl std::fmt::Debug for MatchHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MatchHasher(..)")
    }
}

impl MatchHasher {
    pub fn new(key: &[u8]) -> MatchHasher {
        // HMAC takes keys of any length; an empty key still hashes.
        let keyed = match Hmac::<Sha256>::new_from_slice(key) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC accepts keys of any length"),
        };
        MatchHasher { keyed }
    }

    /// First 32 hex digits of HMAC-SHA-256(key, normalised).
    pub fn hash(&self, normalised: &str) -> String {
        let mut mac = self.keyed.clone();
        mac.update(normalised.as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut hex = String::with_capacity(32);
        for byte in &digest[..16] {
            const DIGITS: &[u8; 16] = b"0123456789abcdef";
            hex.push(char::from(DIGITS[usize::from(byte >> 4)]));
            hex.push(char::from(DIGITS[usize::from(byte & 15)]));
        }
        hex
    }
}

const EXCERPT_CHARS: usize = 16;

/// The excerpt around `hits[index]` in `text` (which starts at offset
/// `base`): up to 16 characters either side, every hit in it masked.
pub(crate) fn excerpt(text: &str, base: usize, hits: &[Hit], index: usize) -> String {
    let hit = &hits[index];
    let (start, end) = (hit.start - base, hit.end - base);
    let from = text[..start]
        .char_indices()
        .rev()
        .nth(EXCERPT_CHARS - 1)
        .map_or(0, |(i, _)| i);
    let to = text[end..]
        .char_indices()
        .nth(EXCERPT_CHARS)
        .map_or(text.len(), |(i, _)| end + i);
    let mut out = String::new();
    let mut at = from;
    // The hit itself and any other hit in the window, masked whole.
    let mut masks: Vec<(usize, usize, &str)> = hits
        .iter()
        .map(|h| (h.start - base, h.end - base, &*h.mask))
        .filter(|&(s, e, _)| s < to && e > from)
        .collect();
    masks.sort_by_key(|&(s, _, _)| s);
    for (s, e, mask) in masks {
        if e <= at {
            continue;
        }
        if s > at {
            out.push_str(&text[at..s]);
        }
        out.push_str(mask);
        at = e;
    }
    if at < to {
        out.push_str(&text[at..to]);
    }
    out
}
