//! One character cluster (a character and the combining marks after it):
//! where it ends, and what it normalises to.

use unicode_normalization::char::{canonical_combining_class, decompose_compatible};
use unicode_normalization::{IsNormalized, UnicodeNormalization, is_nfkc_quick};

use super::Options;
use crate::charclass::{fold_variant, is_invisible};

/// Whether the character at `at` might attach to the one before it: only
/// then is it worth decoding. ASCII and CJK ideographs never attach.
#[inline]
pub(super) fn is_attaching_lead(bytes: &[u8], at: usize) -> bool {
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
pub(super) fn decode(bytes: &[u8], at: usize) -> Option<char> {
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
pub(super) enum Emit {
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

pub(super) fn single_char(c: char, options: Options) -> Emit {
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
pub(super) fn rewrite_cluster(cluster: &str, options: Options) -> Emit {
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
pub(super) fn cluster_end(text: &str, mut at: usize) -> usize {
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

pub(super) fn attaches(c: char) -> bool {
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
