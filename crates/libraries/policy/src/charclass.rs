//! Character classes the normaliser needs: which characters are CJK, which
//! are separators (skippable between CJK characters), which are invisible
//! (always removed), and traditional -> simplified Chinese folding.

use std::sync::OnceLock;

/// Han ideographs, kana and Hangul syllables: the scripts whose words are
/// written without spaces, so a separator between two of them is noise.
pub(crate) fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3005..=0x3007          // 々 〆 〇
        | 0x3040..=0x30FF        // hiragana, katakana
        | 0x31F0..=0x31FF        // katakana phonetic extensions
        | 0x3400..=0x4DBF        // CJK extension A
        | 0x4E00..=0x9FFF        // CJK unified ideographs
        | 0xAC00..=0xD7AF        // Hangul syllables
        | 0xF900..=0xFAFF        // CJK compatibility ideographs
        | 0x20000..=0x3FFFF) // CJK extensions B..
}

/// Characters an evader puts between the characters of a word (`敏 感`,
/// `敏*感`, `敏。感`): whitespace, ASCII punctuation and symbols, general
/// and CJK punctuation, and the symbol blocks (arrows, shapes, dingbats).
/// Only used when a rule sets `skip_separators`, and only between CJK
/// characters.
pub(crate) fn is_separator(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_whitespace() || c.is_ascii_punctuation();
    }
    c.is_whitespace()
        || matches!(c as u32,
            0x00A1..=0x00BF          // Latin-1 punctuation and symbols
            | 0x00D7 | 0x00F7        // × ÷
            | 0x2010..=0x205E        // general punctuation (dashes, quotes, …)
            | 0x2190..=0x2BFF        // arrows, math, technical, box, shapes, dingbats
            | 0x3001..=0x3004        // 、。〃〄
            | 0x3008..=0x3020        // brackets 〈〉《》「」『』【】, 〒, 〓, 〜
            | 0x3030                 // 〰
            | 0x30FB                 // ・ katakana middle dot
            | 0xFE10..=0xFE1F        // vertical forms
            | 0xFE30..=0xFE6F        // CJK compatibility and small forms
            | 0xFF01..=0xFF0F        // full-width ! " # ... /
            | 0xFF1A..=0xFF20        // full-width : ; < = > ? @
            | 0xFF3B..=0xFF40        // full-width [ \ ] ^ _ `
            | 0xFF5B..=0xFF65) // full-width { | } ~ and half-width CJK punctuation
}

/// Characters that render as nothing and are removed before matching:
/// zero-width space/joiners, word joiner, BOM, soft hyphen, bidirectional
/// controls, variation selectors and the other default-ignorable code
/// points an evader can slip into a word.
pub(crate) fn is_invisible(c: char) -> bool {
    matches!(c as u32,
        0x00AD                   // soft hyphen
        | 0x034F                 // combining grapheme joiner
        | 0x061C                 // Arabic letter mark
        | 0x115F | 0x1160        // Hangul fillers
        | 0x17B4 | 0x17B5        // Khmer inherent vowels
        | 0x180B..=0x180F        // Mongolian variation selectors, vowel separator
        | 0x200B..=0x200F        // ZWSP, ZWNJ, ZWJ, LRM, RLM
        | 0x202A..=0x202E        // bidirectional embeddings and overrides
        | 0x2060..=0x206F        // word joiner, invisible operators, bidi isolates
        | 0x3164                 // Hangul filler
        | 0xFE00..=0xFE0F        // variation selectors
        | 0xFEFF                 // BOM / zero-width no-break space
        | 0xFFA0                 // half-width Hangul filler
        | 0xFFF0..=0xFFF8
        | 0x1BCA0..=0x1BCA3      // shorthand format controls
        | 0x1D173..=0x1D17A      // musical format controls
        | 0xE0000..=0xE0FFF) // tags, variation selectors supplement
}

/// Traditional -> simplified, one character at a time, from the `fast2s`
/// crate's table (no hand-written table here). Character by character on
/// purpose: the same character folds the same way in a term and in text,
/// whatever surrounds it.
pub(crate) fn fold_variant(c: char) -> char {
    let code = c as u32;
    if !(FOLD_FIRST..=FOLD_LAST).contains(&code) {
        return c;
    }
    let table = variant_table();
    let index = (code - FOLD_FIRST) as usize;
    if table.changes[index / 64] & (1 << (index % 64)) == 0 {
        return c;
    }
    match table.pairs.binary_search_by_key(&code, |&(from, _)| from) {
        Ok(at) => table.pairs[at].1,
        Err(_) => c,
    }
}

/// `fast2s` converts only three-byte (BMP) characters; all its traditional
/// characters lie in the CJK blocks below.
const FOLD_FIRST: u32 = 0x2E80;
const FOLD_LAST: u32 = 0xFAFF;

struct VariantTable {
    /// One bit per code point in FOLD_FIRST..=FOLD_LAST: does it fold?
    /// 6.9 KB, so the common case (no fold) is one cached bit test.
    changes: Vec<u64>,
    /// (traditional, simplified), sorted.
    pairs: Vec<(u32, char)>,
}

fn variant_table() -> &'static VariantTable {
    static TABLE: OnceLock<VariantTable> = OnceLock::new();
    TABLE.get_or_init(|| {
        let span = (FOLD_LAST - FOLD_FIRST + 1) as usize;
        let mut changes = vec![0u64; span.div_ceil(64)];
        let mut pairs = Vec::new();
        let mut one = String::with_capacity(4);
        for code in FOLD_FIRST..=FOLD_LAST {
            let Some(c) = char::from_u32(code) else {
                continue;
            };
            one.clear();
            one.push(c);
            let converted = fast2s::convert(&one);
            let mut chars = converted.chars();
            if let (Some(to), None) = (chars.next(), chars.next())
                && to != c
            {
                let index = (code - FOLD_FIRST) as usize;
                changes[index / 64] |= 1 << (index % 64);
                pairs.push((code, to));
            }
        }
        VariantTable { changes, pairs }
    })
}

/// Builds the variant table now (it takes a few milliseconds), so the first
/// request does not pay for it.
pub(crate) fn warm_variant_table() {
    variant_table();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traditional_folds_to_simplified_and_simplified_stays() {
        assert_eq!(fold_variant('詞'), '词');
        assert_eq!(fold_variant('敏'), '敏');
        assert_eq!(fold_variant('感'), '感');
        assert_eq!(fold_variant('國'), '国');
        assert_eq!(fold_variant('国'), '国');
        assert_eq!(fold_variant('a'), 'a');
    }

    #[test]
    fn classes() {
        assert!(is_cjk('敏') && is_cjk('か') && is_cjk('한'));
        assert!(!is_cjk('a') && !is_cjk('，'));
        for c in [
            ' ', '*', '_', '-', '.', '。', '、', '，', '·', '★', '\u{3000}',
        ] {
            assert!(is_separator(c), "{c:?}");
        }
        for c in ['a', '1', '敏', 'é'] {
            assert!(!is_separator(c), "{c:?}");
        }
        for c in [
            '\u{200B}', '\u{200C}', '\u{200D}', '\u{2060}', '\u{FEFF}', '\u{00AD}',
        ] {
            assert!(is_invisible(c), "{c:?}");
        }
    }
}
