//! Normalisation before word lists are matched, with a map back to the
//! original text so a match redacts exactly the characters that formed it.
//!
//! Per character cluster (a character and the combining marks after it):
//! Unicode NFKC (full-width letters and digits fold, `㍿` -> `株式会社`),
//! then lower case (`ς` -> `σ`, `ß` -> `ss`), invisible characters removed
//! (zero-width space/joiners, word joiner, BOM, soft hyphen, ...), and
//! optionally traditional -> simplified Chinese. Optionally, separators
//! between two CJK characters are dropped (`敏 感`, `敏*感` -> `敏感`).
//!
//! Fast paths: ASCII and CJK ideographs never pay for NFKC; text that needs
//! no change is borrowed, and length-preserving changes (ASCII case,
//! traditional -> simplified) need no map entry.

use std::borrow::Cow;

use unicode_normalization::char::{canonical_combining_class, decompose_compatible};
use unicode_normalization::{IsNormalized, UnicodeNormalization, is_nfkc_quick};

use crate::charclass::{fold_variant, is_cjk, is_invisible, is_separator};

/// How a group of word-list rules wants text normalised.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct Options {
    pub skip_separators: bool,
    pub fold_variants: bool,
}

/// A stretch of the input that normalised to something of another shape
/// (or to nothing). Between segments, offsets shift by a constant.
#[derive(Clone, Copy, Debug)]
struct Segment {
    norm_start: usize,
    norm_end: usize,
    orig_start: usize,
    orig_end: usize,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct LastCluster {
    pub orig: usize,
    pub norm: usize,
    pub first: char,
}

/// Normalised text and the way back to the input's byte offsets.
#[derive(Debug)]
pub(crate) struct Normalised<'a> {
    text: Cow<'a, str>,
    segments: Vec<Segment>,
    /// A trailing run of separators after a CJK character, kept for now:
    /// whether it is dropped depends on the next character, not yet seen
    /// by a stream. Its start, in normalised offsets.
    pub undecided_separators: Option<usize>,
    /// The last cluster: its input and normalised offsets and its first
    /// character. A stream holds it back when a combining mark still to
    /// come could turn it into a character some term contains.
    pub last_cluster: Option<LastCluster>,
}

impl Normalised<'_> {
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Input offset where the normalised byte at `norm` came from (its
    /// cluster's start when it lies inside a rewritten cluster). Dropped
    /// characters just before `norm` are not included.
    pub fn orig_start(&self, norm: usize) -> usize {
        let after = self.segments.partition_point(|s| s.norm_start <= norm);
        match after.checked_sub(1).map(|i| self.segments[i]) {
            None => norm,
            Some(seg) if norm < seg.norm_end => seg.orig_start,
            Some(seg) => seg.orig_end + (norm - seg.norm_end),
        }
    }

    /// Input offset where a match ending (exclusive) at `norm` ends: the end
    /// of the cluster its last byte came from. Dropped characters just
    /// after the match are not included.
    pub fn orig_end(&self, norm: usize) -> usize {
        let after = self.segments.partition_point(|s| s.norm_start < norm);
        match after.checked_sub(1).map(|i| self.segments[i]) {
            None => norm,
            Some(seg) if norm <= seg.norm_end => seg.orig_end,
            Some(seg) => seg.orig_end + (norm - seg.norm_end),
        }
    }
}

/// Normalises `text`. `prev` is the character just before it (a stream's
/// earlier text), which decides whether leading separators sit between CJK
/// characters.
pub(crate) fn normalise(text: &str, prev: Option<char>, options: Options) -> Normalised<'_> {
    let mut writer = Writer {
        src: text,
        out: None,
        copied: 0,
        segments: Vec::new(),
        options,
        prev_cjk: prev.is_some_and(is_cjk),
        run: None,
    };
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        // Fast path: a run of plain ASCII and CJK ideographs, which need no
        // more than ASCII lower-casing (most text).
        let (end, upper) = plain_run(bytes, i, &mut writer);
        if end > i {
            writer.copy_plain(i, end, upper);
            i = end;
            continue;
        }
        let Some(c) = text[i..].chars().next() else {
            break;
        };
        let end = cluster_end(text, i + c.len_utf8());
        let emit = if end == i + c.len_utf8() {
            single_char(c, options)
        } else {
            rewrite_cluster(&text[i..end], options)
        };
        writer.cluster(i, end, c, emit);
        i = end;
    }
    writer.finish()
}

/// The end of the run of plain characters from `at`: ASCII (any case) and,
/// unless variants fold, CJK ideographs (U+4000..U+9FFF), none followed by
/// a combining mark; with `skip_separators`, stopping where a separator
/// follows a CJK character or a pending separator run could end. Also
/// says whether the run has upper-case ASCII letters.
fn plain_run(bytes: &[u8], at: usize, writer: &mut Writer<'_>) -> (usize, bool) {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let options = writer.options;
    if options.skip_separators && writer.run.is_some() {
        return (at, false);
    }
    let skip = options.skip_separators;
    let mut prev_cjk = writer.prev_cjk;
    let mut upper = false;
    let mut j = at;
    while j < bytes.len() {
        let b = bytes[j];
        if b < 0x80 {
            if skip && prev_cjk && is_ascii_separator(b) {
                break;
            }
            // Eight ASCII bytes at once once past any CJK character.
            if !(skip && prev_cjk)
                && let Some(chunk) = bytes.get(j..j + 8)
            {
                let mut word = [0u8; 8];
                word.copy_from_slice(chunk);
                let x = u64::from_le_bytes(word);
                if x & HIGH == 0 {
                    upper |= has_upper(x);
                    prev_cjk = false;
                    j += 8;
                    continue;
                }
            }
            upper |= b.is_ascii_uppercase();
            prev_cjk = false;
            j += 1;
        } else if (0xE4..=0xE9).contains(&b) && !options.fold_variants && j + 3 <= bytes.len() {
            // U+4DC0..U+4DFF (hexagram symbols) are stable but not CJK.
            prev_cjk = !(b == 0xE4 && bytes[j + 1] == 0xB7 && bytes[j + 2] >= 0x80);
            j += 3;
        } else {
            break;
        }
    }
    // A combining mark after the run belongs to the run's last character.
    if j < bytes.len() && j > at && is_attaching_lead(bytes, j) {
        j -= 1;
        while j > at && (bytes[j] & 0xC0) == 0x80 {
            j -= 1;
        }
        prev_cjk = writer.prev_cjk;
        if j > at {
            // Recompute for the shortened run.
            let (end, upper) = plain_run_until(bytes, at, j, writer);
            return (end, upper);
        }
    }
    if skip {
        writer.prev_cjk = prev_cjk;
    }
    (j, upper)
}

/// `plain_run` capped at `until` (known to be a character boundary).
fn plain_run_until(
    bytes: &[u8],
    at: usize,
    until: usize,
    writer: &mut Writer<'_>,
) -> (usize, bool) {
    let mut prev_cjk = writer.prev_cjk;
    let mut j = at;
    while j < until {
        let b = bytes[j];
        if b < 0x80 {
            prev_cjk = false;
            j += 1;
        } else {
            prev_cjk = !(b == 0xE4 && bytes[j + 1] == 0xB7);
            j += 3;
        }
    }
    if writer.options.skip_separators {
        writer.prev_cjk = prev_cjk;
    }
    (until, bytes[at..until].iter().any(u8::is_ascii_uppercase))
}

/// SWAR: does this word of ASCII bytes hold an upper-case letter?
fn has_upper(x: u64) -> bool {
    const ONES: u64 = u64::MAX / 255;
    const LOW7: u64 = ONES * 127;
    // Bit hack "has a byte between m and n" with m = '@', n = '['.
    let low = x & LOW7;
    (ONES.wrapping_mul(127 + 0x5B).wrapping_sub(low))
        & !x
        & low.wrapping_add(ONES.wrapping_mul(127 - 0x40))
        & (ONES * 128)
        != 0
}

fn is_ascii_separator(b: u8) -> bool {
    b.is_ascii_whitespace() || b.is_ascii_punctuation()
}

/// Whether the character at `at` might attach to the one before it: only
/// then is it worth decoding. ASCII and CJK ideographs never attach.
#[inline]
fn is_attaching_lead(bytes: &[u8], at: usize) -> bool {
    match bytes.get(at) {
        None => false,
        Some(&lead) => {
            lead >= 0x80 && !(0xE4..=0xE9).contains(&lead) && next_attaching_at(bytes, at)
        }
    }
}

fn next_attaching_at(bytes: &[u8], at: usize) -> bool {
    decode(bytes, at).is_some_and(attaches)
}

/// The character at `at` of valid UTF-8 `bytes`.
fn decode(bytes: &[u8], at: usize) -> Option<char> {
    let lead = u32::from(*bytes.get(at)?);
    let cont = |i: usize| bytes.get(at + i).map_or(0, |&b| u32::from(b & 0x3F));
    let code = match lead {
        0x00..=0x7F => lead,
        0xC0..=0xDF => ((lead & 0x1F) << 6) | cont(1),
        0xE0..=0xEF => ((lead & 0x0F) << 12) | (cont(1) << 6) | cont(2),
        _ => ((lead & 0x07) << 18) | (cont(1) << 12) | (cont(2) << 6) | cont(3),
    };
    char::from_u32(code)
}

/// What one cluster becomes.
enum Emit {
    /// Itself.
    Same,
    /// One character of the same UTF-8 length (no map entry needed).
    Char(char),
    /// One character of another length.
    Narrow(char),
    /// Something of another shape.
    Text(String),
    /// Nothing (invisible characters).
    Drop,
}

fn single_char(c: char, options: Options) -> Emit {
    let code = c as u32;
    match code {
        0x4E00..=0x9FFF | 0x3400..=0x4DBF => {
            if !options.fold_variants {
                return Emit::Same;
            }
            let folded = fold_variant(c);
            if folded == c {
                Emit::Same
            } else if folded.len_utf8() == c.len_utf8() {
                Emit::Char(folded)
            } else {
                Emit::Narrow(folded)
            }
        }
        // Full-width ASCII: NFKC gives the ASCII character.
        0xFF01..=0xFF5E => {
            let ascii = char::from_u32(code - 0xFEE0).map_or(c, |a| a.to_ascii_lowercase());
            Emit::Narrow(ascii)
        }
        0x3000 => Emit::Narrow(' '),
        _ if is_invisible(c) => Emit::Drop,
        _ if is_stable(c, options) => Emit::Same,
        _ => {
            let mut buf = [0u8; 4];
            rewrite_cluster(c.encode_utf8(&mut buf), options)
        }
    }
}

/// NFKC-stable, a starter, lower case and (if asked) already simplified.
fn is_stable(c: char, options: Options) -> bool {
    is_nfkc_quick(std::iter::once(c)) == IsNormalized::Yes
        && canonical_combining_class(c) == 0
        && is_lowercase_fixed_point(c)
        && (!options.fold_variants || fold_variant(c) == c)
}

fn is_lowercase_fixed_point(c: char) -> bool {
    if matches!(c, 'ς' | 'ß') {
        return false;
    }
    let mut lower = c.to_lowercase();
    lower.next() == Some(c) && lower.next().is_none()
}

/// The full treatment for a cluster: NFKC, case folding, invisible
/// characters removed, variants folded.
fn rewrite_cluster(cluster: &str, options: Options) -> Emit {
    let mut out = String::with_capacity(cluster.len());
    for c in cluster.nfkc() {
        for lower in c.to_lowercase() {
            match lower {
                'ß' => out.push_str("ss"),
                'ς' => out.push('σ'),
                l if is_invisible(l) => {}
                l if options.fold_variants => out.push(fold_variant(l)),
                l => out.push(l),
            }
        }
    }
    if out == cluster {
        return Emit::Same;
    }
    if out.is_empty() {
        return Emit::Drop;
    }
    let mut in_chars = cluster.chars();
    let mut out_chars = out.chars();
    match (
        in_chars.next(),
        in_chars.next(),
        out_chars.next(),
        out_chars.next(),
    ) {
        (Some(a), None, Some(b), None) if a.len_utf8() == b.len_utf8() => Emit::Char(b),
        _ => Emit::Text(out),
    }
}

/// End of the cluster whose first character ends at `at`: combining marks
/// (and the few characters that compose with what precedes them) belong to
/// the character before them.
fn cluster_end(text: &str, mut at: usize) -> usize {
    while let Some(c) = next_attaching(text, at) {
        at += c.len_utf8();
    }
    at
}

fn next_attaching(text: &str, at: usize) -> Option<char> {
    let lead = *text.as_bytes().get(at)?;
    // ASCII and CJK ideographs (lead bytes E4..E9) never attach.
    if lead < 0x80 || (0xE4..=0xE9).contains(&lead) {
        return None;
    }
    let c = text[at..].chars().next()?;
    attaches(c).then_some(c)
}

fn attaches(c: char) -> bool {
    // Cheap exits for what usually follows plain text: punctuation, CJK
    // symbols, kana, ideographs, Hangul syllables, full-width forms.
    if matches!(c as u32,
        0..=0x2FF
        | 0x2000..=0x20CF
        | 0x3000..=0x3029
        | 0x3030..=0x3098
        | 0x309B..=0x30FF
        | 0x4E00..=0x9FFF
        | 0xAC00..=0xD7A3
        | 0xFF00..=0xFF9D
        | 0xFFA0..=0xFFEF)
    {
        return false;
    }
    if canonical_combining_class(c) != 0 {
        return true;
    }
    match is_nfkc_quick(std::iter::once(c)) {
        IsNormalized::Yes => false,
        // Composes with what precedes it (Hangul vowels, some vowel signs).
        IsNormalized::Maybe => true,
        IsNormalized::No => {
            let mut first = None;
            decompose_compatible(c, |d| {
                first.get_or_insert(d);
            });
            first.is_some_and(|d| canonical_combining_class(d) != 0)
        }
    }
}

/// A run of separators after a CJK character, not yet known to be followed
/// by another CJK character.
#[derive(Clone, Copy)]
struct SeparatorRun {
    orig_start: usize,
    norm_start: usize,
    segments: usize,
}

struct Writer<'a> {
    src: &'a str,
    /// `None` while the output equals the input so far.
    out: Option<String>,
    /// Input consumed into `out`; `src[copied..]` up to the current cluster
    /// is unchanged text not yet copied.
    copied: usize,
    segments: Vec<Segment>,
    options: Options,
    prev_cjk: bool,
    run: Option<SeparatorRun>,
}

impl<'a> Writer<'a> {
    /// A run of plain characters: itself, ASCII lower-cased. (Runs are
    /// never inside a pending separator run.)
    fn copy_plain(&mut self, start: usize, end: usize, upper: bool) {
        if !upper {
            return;
        }
        let out = self.flush(end);
        let from = out.len() - (end - start);
        out[from..].make_ascii_lowercase();
    }

    fn cluster(&mut self, start: usize, end: usize, first: char, emit: Emit) {
        if let Emit::Drop = emit {
            let at = self.norm_offset(start);
            self.write(start, end, emit);
            debug_assert_eq!(at, self.norm_offset(end));
            return;
        }
        if self.options.skip_separators {
            let (head, last, all_separators) = match &emit {
                Emit::Same => (first, last_char(&self.src[start..end]), is_separator(first)),
                Emit::Char(c) | Emit::Narrow(c) => (*c, *c, is_separator(*c)),
                Emit::Text(s) => (
                    s.chars().next().unwrap_or(first),
                    last_char(s),
                    s.chars().all(is_separator),
                ),
                Emit::Drop => (first, first, false),
            };
            if all_separators {
                if self.prev_cjk && self.run.is_none() {
                    self.run = Some(SeparatorRun {
                        orig_start: start,
                        norm_start: self.norm_offset(start),
                        segments: self.segments.len(),
                    });
                }
                self.write(start, end, emit);
                if self.run.is_none() {
                    self.prev_cjk = false;
                }
                return;
            }
            if let Some(run) = self.run.take()
                && is_cjk(head)
            {
                self.drop_run(run, start);
            }
            self.prev_cjk = is_cjk(last);
        }
        self.write(start, end, emit);
    }

    #[inline]
    fn norm_offset(&self, orig: usize) -> usize {
        match &self.out {
            None => orig,
            Some(out) => out.len() + (orig - self.copied),
        }
    }

    /// Makes the output owned and complete up to `orig`.
    fn flush(&mut self, orig: usize) -> &mut String {
        let src = self.src;
        let copied = self.copied;
        self.copied = orig;
        if self.out.is_none() {
            let mut out = String::with_capacity(src.len() + 16);
            out.push_str(&src[..copied]);
            self.out = Some(out);
        }
        let out = self.out.get_or_insert_with(String::new);
        out.push_str(&src[copied..orig]);
        out
    }

    fn write(&mut self, start: usize, end: usize, emit: Emit) {
        match emit {
            Emit::Same => {}
            Emit::Char(c) => {
                self.flush(start).push(c);
                self.copied = end;
            }
            Emit::Narrow(c) => {
                let mut buf = [0u8; 4];
                self.replace(start, end, c.encode_utf8(&mut buf));
            }
            Emit::Text(text) => self.replace(start, end, &text),
            Emit::Drop => self.replace(start, end, ""),
        }
    }

    fn replace(&mut self, start: usize, end: usize, with: &str) {
        let out = self.flush(start);
        let norm_start = out.len();
        out.push_str(with);
        let norm_end = out.len();
        self.copied = end;
        self.segments.push(Segment {
            norm_start,
            norm_end,
            orig_start: start,
            orig_end: end,
        });
    }

    /// The separators between two CJK characters go: the run's output is
    /// taken back and recorded as one dropped stretch.
    fn drop_run(&mut self, run: SeparatorRun, until: usize) {
        let out = self.flush(until);
        out.truncate(run.norm_start);
        self.segments.truncate(run.segments);
        self.segments.push(Segment {
            norm_start: run.norm_start,
            norm_end: run.norm_start,
            orig_start: run.orig_start,
            orig_end: until,
        });
    }

    fn finish(mut self) -> Normalised<'a> {
        let text = match self.out.take() {
            None => Cow::Borrowed(self.src),
            Some(mut out) => {
                out.push_str(&self.src[self.copied..]);
                Cow::Owned(out)
            }
        };
        let last_cluster = last_cluster(self.src, text.len(), &self.segments);
        Normalised {
            text,
            segments: self.segments,
            undecided_separators: self.run.map(|run| run.norm_start),
            last_cluster,
        }
    }
}

/// The last cluster of `src`: where it starts, in the input and in the
/// output (of length `norm_len`), and its first character.
fn last_cluster(src: &str, norm_len: usize, segments: &[Segment]) -> Option<LastCluster> {
    let mut chars = src.char_indices().rev();
    let (mut orig, mut first) = chars.next()?;
    while attaches(first) {
        match chars.next() {
            Some((at, c)) => (orig, first) = (at, c),
            None => break,
        }
    }
    let norm = match segments.last() {
        Some(seg) if seg.orig_end == src.len() && seg.orig_start <= orig => seg.norm_start,
        _ => norm_len - (src.len() - orig),
    };
    Some(LastCluster { orig, norm, first })
}

fn last_char(s: &str) -> char {
    s.chars().next_back().unwrap_or(' ')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(text: &str, skip: bool, fold: bool) -> String {
        let options = Options {
            skip_separators: skip,
            fold_variants: fold,
        };
        normalise(text, None, options).text().to_owned()
    }

    #[test]
    fn folds_width_case_and_invisibles() {
        assert_eq!(norm("ＡＢＣ１２３", false, false), "abc123");
        assert_eq!(norm("HeLLo", false, false), "hello");
        assert_eq!(
            norm("敏\u{200B}感\u{200D}词\u{FEFF}", false, false),
            "敏感词"
        );
        assert_eq!(norm("so\u{00AD}ft", false, false), "soft");
        assert_eq!(norm("cafe\u{301}", false, false), "café");
        assert_eq!(norm("ΣΑΣ STRAẞE", false, false), "σασ strasse");
        assert_eq!(norm("㍿", false, false), "株式会社");
    }

    #[test]
    fn already_normal_text_is_borrowed() {
        let n = normalise("plain text 中文。", None, Options::default());
        assert!(matches!(n.text, Cow::Borrowed(_)));
    }

    #[test]
    fn separators_between_cjk_only() {
        assert_eq!(norm("敏 感 词", true, false), "敏感词");
        assert_eq!(norm("敏*感_词", true, false), "敏感词");
        assert_eq!(norm("敏。感、词", true, false), "敏感词");
        assert_eq!(norm("敏\u{3000}感", true, false), "敏感");
        assert_eq!(norm("a b", true, false), "a b");
        assert_eq!(norm("敏 a", true, false), "敏 a");
        assert_eq!(norm("敏 感", false, false), "敏 感");
        let trailing = normalise(
            "敏 ",
            None,
            Options {
                skip_separators: true,
                fold_variants: false,
            },
        );
        assert_eq!(trailing.undecided_separators, Some(3));
    }

    #[test]
    fn variants_only_when_asked() {
        assert_eq!(norm("敏感詞", false, true), "敏感词");
        assert_eq!(norm("敏感詞", false, false), "敏感詞");
    }

    #[test]
    fn offsets_map_back_to_the_input() {
        let text = "x ＡＢ\u{200B}Ｃ y";
        let n = normalise(text, None, Options::default());
        assert_eq!(n.text(), "x ab\u{0}c y".replace('\u{0}', "").as_str());
        let start = n.text().find("abc").unwrap_or(0);
        let (s, e) = (n.orig_start(start), n.orig_end(start + 3));
        assert_eq!(&text[s..e], "ＡＢ\u{200B}Ｃ");
        let spaced = "啊敏 * 感词啊";
        let n = normalise(
            spaced,
            None,
            Options {
                skip_separators: true,
                fold_variants: false,
            },
        );
        let start = n.text().find("敏感词").unwrap_or(0);
        let (s, e) = (n.orig_start(start), n.orig_end(start + "敏感词".len()));
        assert_eq!(&spaced[s..e], "敏 * 感词");
        let ligature = "a㍿b";
        let n = normalise(ligature, None, Options::default());
        let start = n.text().find("式会").unwrap_or(0);
        assert_eq!(&ligature[n.orig_start(start)..n.orig_end(start + 6)], "㍿");
    }
}

#[cfg(test)]
mod attach_tests {
    use super::*;

    /// The cheap exits in `attaches` agree with the full test.
    #[test]
    fn cheap_exits_agree_with_the_tables() {
        let full = |c: char| {
            canonical_combining_class(c) != 0
                || match is_nfkc_quick(std::iter::once(c)) {
                    IsNormalized::Yes => false,
                    IsNormalized::Maybe => true,
                    IsNormalized::No => {
                        let mut first = None;
                        decompose_compatible(c, |d| {
                            first.get_or_insert(d);
                        });
                        first.is_some_and(|d| canonical_combining_class(d) != 0)
                    }
                }
        };
        for code in 0..=0x10FFFF {
            if let Some(c) = char::from_u32(code) {
                assert_eq!(attaches(c), full(c), "U+{code:04X}");
            }
        }
    }

    #[test]
    fn decode_agrees_with_std() {
        let text = "aé中𝄞，";
        for (at, c) in text.char_indices() {
            assert_eq!(decode(text.as_bytes(), at), Some(c));
        }
    }
}
