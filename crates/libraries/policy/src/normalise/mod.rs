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

mod cluster;
mod writer;

use crate::charclass::is_cjk;
use crate::startfilter::utf8_len;
use cluster::{Emit, cluster_end, decode, is_attaching_lead, rewrite_cluster, single_char};
use writer::Writer;

/// How a group of word-list rules wants text normalised.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct Options {
    pub skip_separators: bool,
    pub fold_variants: bool,
}

/// A stretch of the input that normalised to something of another shape
/// (or to nothing). Between segments, offsets shift by a constant.
#[derive(Clone, Copy, Debug)]
pub(super) struct Segment {
    pub(super) norm_start: usize,
    pub(super) norm_end: usize,
    pub(super) orig_start: usize,
    pub(super) orig_end: usize,
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
    let mut writer = Writer::new(text, prev.is_some_and(is_cjk), options);
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
        // Full-width ASCII (`，！？：；（）ＡＢＣ`): one character, folded.
        if bytes[i] == 0xEF
            && !options.skip_separators
            && let Some(c) = decode(bytes, i).filter(|c| ('\u{FF01}'..='\u{FF5E}').contains(c))
            && !is_attaching_lead(bytes, i + 3)
        {
            let ascii = char::from_u32(c as u32 - 0xFEE0)
                .unwrap_or(c)
                .to_ascii_lowercase();
            writer.cluster(i, i + 3, c, Emit::Narrow(ascii));
            i += 3;
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
    if options.skip_separators && writer.has_pending_run() {
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
        } else if j + 3 <= bytes.len() && is_stable_punctuation(b, bytes[j + 1], bytes[j + 2]) {
            if skip && prev_cjk {
                break;
            }
            prev_cjk = false;
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
            prev_cjk = decode(bytes, j).is_some_and(is_cjk);
            j += utf8_len(b);
        }
    }
    if writer.options.skip_separators {
        writer.prev_cjk = prev_cjk;
    }
    (until, bytes[at..until].iter().any(u8::is_ascii_uppercase))
}

/// Common punctuation of Chinese text that NFKC keeps as it is: `、。`,
/// `《》「」『』【】`, `‘’“”` (three UTF-8 bytes each). Separators, though.
fn is_stable_punctuation(b0: u8, b1: u8, b2: u8) -> bool {
    match (b0, b1) {
        (0xE3, 0x80) => matches!(b2, 0x81 | 0x82 | 0x8A..=0x91),
        (0xE2, 0x80) => matches!(b2, 0x98 | 0x99 | 0x9C | 0x9D),
        _ => false,
    }
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

pub(super) fn is_ascii_separator(b: u8) -> bool {
    b.is_ascii_whitespace() || b.is_ascii_punctuation()
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

/// The fast paths agree with a plain, cluster-by-cluster reference.
#[cfg(test)]
mod reference_tests {
    use proptest::prelude::*;

    use super::cluster::{Emit, attaches, rewrite_cluster};
    use super::*;
    use crate::charclass::is_separator;

    /// Cluster by cluster: the full rewrite, then separator runs between
    /// CJK characters dropped.
    fn reference(text: &str, prev: Option<char>, options: Options) -> String {
        let mut clusters: Vec<String> = Vec::new();
        for c in text.chars() {
            match clusters.last_mut() {
                Some(last) if attaches(c) => last.push(c),
                _ => clusters.push(c.to_string()),
            }
        }
        let outputs: Vec<String> = clusters
            .iter()
            .map(|cluster| match rewrite_cluster(cluster, options) {
                Emit::Same => cluster.clone(),
                Emit::Char(c) | Emit::Narrow(c) => c.to_string(),
                Emit::Text(t) => t,
                Emit::Drop => String::new(),
            })
            .collect();
        if !options.skip_separators {
            return outputs.concat();
        }
        let is_sep = |s: &str| !s.is_empty() && s.chars().all(is_separator);
        let mut out = String::new();
        let mut prev_cjk = prev.is_some_and(is_cjk);
        for (i, piece) in outputs.iter().enumerate() {
            if is_sep(piece) && prev_cjk {
                let next = outputs[i + 1..]
                    .iter()
                    .find(|p| !p.is_empty() && !is_sep(p));
                if next.and_then(|p| p.chars().next()).is_some_and(is_cjk) {
                    continue;
                }
            }
            out.push_str(piece);
            if !piece.is_empty() && !is_sep(piece) {
                prev_cjk = piece.chars().next_back().is_some_and(is_cjk);
            } else if is_sep(piece) && !prev_cjk {
                prev_cjk = false;
            }
        }
        out
    }

    const ALPHABET: &[&str] = &[
        "a", "Z", "Q", " ", "*", "-", ".", "\n", "1", "敏", "感", "詞", "词", "、", "。", "《",
        "“", "，", "！", "Ａ", "ｂ", "\u{3000}", "\u{200B}", "\u{200D}", "\u{FEFF}", "\u{301}",
        "\u{308}", "é", "ß", "Σ", "㍿", "ｶ", "\u{FF9E}", "か", "\u{3099}", "한", "\u{11A8}", "①",
        "ﬁ", "x",
    ];

    proptest! {
        #[test]
        fn fast_paths_match_the_reference(
            pieces in prop::collection::vec(prop::sample::select(ALPHABET), 0..40),
            skip in any::<bool>(),
            fold in any::<bool>(),
            prev in prop::option::of(prop::sample::select(vec!['敏', 'a', ' '])),
        ) {
            let text = pieces.concat();
            let options = Options { skip_separators: skip, fold_variants: fold };
            let n = normalise(&text, prev, options);
            prop_assert_eq!(n.text(), reference(&text, prev, options), "{:?}", text);
            // Offsets map to character boundaries, in order.
            let mut last = 0;
            for at in (0..=n.text().len()).filter(|&i| n.text().is_char_boundary(i)) {
                let start = n.orig_start(at);
                prop_assert!(text.is_char_boundary(start) && start >= last);
                last = start;
                prop_assert!(text.is_char_boundary(n.orig_end(at)));
            }
        }
    }
}
