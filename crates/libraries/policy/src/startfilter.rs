//! Which positions of a normalised text could start a term: a cheap test
//! in front of the (cache-hungry) automaton, so that a 50,000-term list does
//! not walk the automaton at every character.
//!
//! The key of a position is its first four bytes when it starts with an
//! ASCII byte (English terms share their first letters too often for less),
//! or its first two characters otherwise (two CJK characters: selective
//! enough). Terms too short for a key are kept apart: one- to three-byte
//! ASCII-led terms by their first one or two bytes (exact bit sets), and
//! one-character terms by that character. Keys go into a Bloom filter with
//! two hash functions, sized at 16 bits per key (about 1.4% false positives;
//! the automaton then says no). A key that runs past the end of the text
//! (a stream's last characters) always passes.

const MASKS: [u64; 9] = [
    0,
    0xFF,
    0xFFFF,
    0xFF_FFFF,
    0xFFFF_FFFF,
    0xFF_FFFF_FFFF,
    0xFFFF_FFFF_FFFF,
    0xFF_FFFF_FFFF_FFFF,
    u64::MAX,
];

/// The `len` bytes at `at` as an integer (little-endian, zero-padded).
#[inline]
fn load(bytes: &[u8], at: usize, len: usize) -> u64 {
    let mut word = [0u8; 8];
    match bytes.get(at..at + 8) {
        Some(window) => word.copy_from_slice(window),
        None => word[..len].copy_from_slice(&bytes[at..at + len]),
    }
    u64::from_le_bytes(word) & MASKS[len]
}

/// The long key at `at` (four bytes after an ASCII lead, else two
/// characters), if it ends by `horizon`. Computed the same way for a term
/// and for text.
#[inline]
fn long_key(bytes: &[u8], at: usize, horizon: usize) -> Option<u64> {
    let lead = bytes[at];
    let len = if lead < 0x80 {
        4
    } else {
        let first = utf8_len(lead);
        if at + first >= horizon {
            return None;
        }
        first + utf8_len(bytes[at + first])
    };
    (at + len <= horizon).then(|| load(bytes, at, len))
}

/// Length of the UTF-8 sequence a lead byte starts (1 for a continuation
/// byte, which is never a position).
#[inline]
pub(crate) fn utf8_len(lead: u8) -> usize {
    usize::from(UTF8_LEN[usize::from(lead)])
}

const UTF8_LEN: [u8; 256] = {
    let mut table = [1u8; 256];
    let mut b = 0xC0;
    while b < 256 {
        table[b] = if b < 0xE0 {
            2
        } else if b < 0xF0 {
            3
        } else {
            4
        };
        b += 1;
    }
    table
};

#[derive(Debug)]
pub(crate) struct StartFilter {
    /// Bloom filter over long keys and one-character terms' characters.
    bloom: Vec<u64>,
    shift: u32,
    /// ASCII-led terms of two or three bytes, by their first two bytes.
    short2: Vec<u64>,
    /// One-byte terms.
    short1: [u64; 4],
    /// Whether any term is a single non-ASCII character (most lists have
    /// none, which saves a lookup per non-ASCII position).
    singles: bool,
}

/// Two multiplicative hashes (odd constants with well-mixed bits).
const HASH: u64 = 0x9E37_79B9_7F4A_7C15;
const HASH2: u64 = 0xC2B2_AE3D_27D4_EB4F;

impl StartFilter {
    pub fn new<'t>(terms: impl ExactSizeIterator<Item = &'t [u8]>) -> StartFilter {
        let bits = (terms.len() * 16)
            .next_power_of_two()
            .clamp(1 << 12, 1 << 24);
        let mut filter = StartFilter {
            bloom: vec![0; bits / 64],
            shift: 64 - bits.trailing_zeros(),
            short2: Vec::new(),
            short1: [0; 4],
            singles: false,
        };
        for term in terms {
            filter.insert(term);
        }
        filter
    }

    fn insert(&mut self, term: &[u8]) {
        let Some(&lead) = term.first() else {
            return;
        };
        if let Some(key) = long_key(term, 0, term.len()) {
            self.set(key);
        } else if lead >= 0x80 {
            self.singles = true;
            self.set(char_key(term, 0));
        } else if term.len() == 1 {
            self.short1[usize::from(lead / 64)] |= 1 << (lead % 64);
        } else {
            if self.short2.is_empty() {
                self.short2 = vec![0; 1024];
            }
            let pair = usize::from(u16::from_le_bytes([term[0], term[1]]));
            self.short2[pair / 64] |= 1 << (pair % 64);
        }
    }

    fn set(&mut self, key: u64) {
        for hash in [HASH, HASH2] {
            let bit = (key.wrapping_mul(hash) >> self.shift) as usize;
            self.bloom[bit / 64] |= 1 << (bit % 64);
        }
    }

    /// Both bits set; the second is only read when the first is (rarely).
    #[inline]
    fn test(&self, key: u64) -> bool {
        let bit = (key.wrapping_mul(HASH) >> self.shift) as usize;
        if self.bloom[bit / 64] & (1 << (bit % 64)) == 0 {
            return false;
        }
        let bit = (key.wrapping_mul(HASH2) >> self.shift) as usize;
        self.bloom[bit / 64] & (1 << (bit % 64)) != 0
    }

    /// Whether a term could start at `at` (a character boundary) of
    /// `bytes`. `horizon`: a key reaching past it is treated as incomplete
    /// (a stream's undecided trailing separators may still be dropped).
    #[inline]
    pub fn may_start(&self, bytes: &[u8], at: usize, horizon: usize) -> bool {
        let horizon = horizon.min(bytes.len()).max(at + 1);
        let lead = bytes[at];
        if lead < 0x80 {
            if self.short1[usize::from(lead / 64)] & (1 << (lead % 64)) != 0 {
                return true;
            }
            if !self.short2.is_empty() {
                if at + 1 >= horizon {
                    return true;
                }
                let pair = usize::from(u16::from_le_bytes([lead, bytes[at + 1]]));
                if self.short2[pair / 64] & (1 << (pair % 64)) != 0 {
                    return true;
                }
            }
        } else if self.singles && self.test(char_key(bytes, at)) {
            return true;
        }
        match long_key(bytes, at, horizon) {
            Some(key) => self.test(key),
            None => true,
        }
    }

    /// Whether every term has a long key (no short-term tables to
    /// consult): then [`Self::may_start_long`] is the whole test.
    pub fn only_long(&self) -> bool {
        !self.singles && self.short2.is_empty() && self.short1 == [0; 4]
    }

    /// The hot path when [`Self::only_long`]: one Bloom test of the long
    /// key in the eight bytes (little-endian) at a position.
    #[inline]
    pub fn may_start_long(&self, word: u64) -> bool {
        let lead = word as u8;
        let len = if lead < 0x80 {
            4
        } else {
            let first = utf8_len(lead);
            first + utf8_len((word >> (8 * first)) as u8)
        };
        self.test(word & MASKS[len])
    }

    /// When [`Self::only_long`]: the first position from `at` (a character
    /// boundary) that passes the filter, or the first at or after `until`
    /// (which must leave eight bytes after any position before it). Takes
    /// sixteen-byte blocks of ASCII (eight positions) or of three-byte
    /// characters (four positions) at a time.
    pub fn skip_long(&self, bytes: &[u8], mut at: usize, until: usize) -> usize {
        const HIGH: u128 = 0x8080_8080_8080_8080_8080_8080_8080_8080;
        while at < until {
            if at + 8 < until {
                let mut block = [0u8; 16];
                block.copy_from_slice(&bytes[at..at + 16]);
                let w = u128::from_le_bytes(block);
                if w & HIGH == 0 {
                    // Eight ASCII positions, each key inside the block.
                    match (0..8).find(|k| self.test((w >> (8 * k)) as u64 & MASKS[4])) {
                        Some(k) => return at + k,
                        None => {
                            at += 8;
                            continue;
                        }
                    }
                }
                let three = |i: usize| block[i] & 0xF0 == 0xE0;
                if three(0) && three(3) && three(6) && three(9) && three(12) {
                    // Four three-byte characters followed by a fifth: four
                    // positions whose two-character keys are inside.
                    match [0, 3, 6, 9]
                        .into_iter()
                        .find(|&k| self.test((w >> (8 * k)) as u64 & MASKS[6]))
                    {
                        Some(k) => return at + k,
                        None => {
                            at += 12;
                            continue;
                        }
                    }
                }
            }
            let mut word = [0u8; 8];
            word.copy_from_slice(&bytes[at..at + 8]);
            if self.may_start_long(u64::from_le_bytes(word)) {
                return at;
            }
            at += utf8_len(bytes[at]);
        }
        at
    }

    /// [`Self::may_start`] for a position with at least eight bytes before
    /// the horizon, given those eight bytes (little-endian).
    #[inline]
    pub fn may_start_word(&self, word: u64) -> bool {
        let lead = word as u8;
        if lead < 0x80 {
            if self.short1[usize::from(lead / 64)] & (1 << (lead % 64)) != 0 {
                return true;
            }
            if !self.short2.is_empty() {
                let pair = usize::from(word as u16);
                if self.short2[pair / 64] & (1 << (pair % 64)) != 0 {
                    return true;
                }
            }
            return self.test(word & MASKS[4]);
        }
        let first = utf8_len(lead);
        if self.singles && self.test((word & MASKS[first]) | (0xFF << 56)) {
            return true;
        }
        let second = utf8_len((word >> (8 * first)) as u8);
        self.test(word & MASKS[first + second])
    }

    pub fn memory_usage(&self) -> usize {
        (self.bloom.len() + self.short2.len()) * 8 + 32
    }
}

/// A one-character key: the character's bytes, marked so it differs from
/// any long key (whose second character would fill the marked byte with
/// something else).
fn char_key(bytes: &[u8], at: usize) -> u64 {
    let len = utf8_len(bytes[at]).min(bytes.len() - at);
    load(bytes, at, len) | (0xFF << 56)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(terms: &[&str]) -> StartFilter {
        StartFilter::new(
            terms
                .iter()
                .map(|t| t.as_bytes())
                .collect::<Vec<_>>()
                .into_iter(),
        )
    }

    fn starts(f: &StartFilter, text: &str, at: usize) -> bool {
        f.may_start(text.as_bytes(), at, text.len())
    }

    #[test]
    fn every_term_passes_where_it_starts() {
        let terms = ["敏感词", "敏", "password", "sb", "x", "a片", "微b", "é"];
        let f = filter(&terms);
        for term in terms {
            let text = format!("{term}...");
            assert!(starts(&f, &text, 0), "{term}");
        }
    }

    #[test]
    fn unrelated_positions_mostly_fail() {
        let f = filter(&["敏感词", "password"]);
        assert!(!starts(&f, "你好世界", 0));
        assert!(!starts(&f, "hello", 0));
        // Too close to the end to tell: passes.
        assert!(starts(&f, "pas", 0));
        assert!(starts(&f, "你", 0));
    }
}
