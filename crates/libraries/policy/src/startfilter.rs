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
//! one hash function, sized at 16 bits per key (about 6% false positives;
//! the automaton then says no). A key that runs past the end of the text
//! (a stream's last characters) always passes.

/// A position's key, computed the same way for a term and for text.
enum Key {
    /// Four bytes (ASCII lead) or two characters, as an integer.
    Long(u64),
    /// Too short for a long key (a term of 1-3 bytes or of one character),
    /// or a text position too close to the end.
    Short,
}

fn key_at(bytes: &[u8], at: usize) -> Key {
    let lead = bytes[at];
    let len = if lead < 0x80 {
        4
    } else {
        let first = utf8_len(lead);
        match bytes.get(at + first) {
            Some(&next) => first + utf8_len(next),
            None => return Key::Short,
        }
    };
    match bytes.get(at..at + len) {
        Some(window) => {
            let mut key = [0u8; 8];
            key[..len].copy_from_slice(window);
            Key::Long(u64::from_le_bytes(key))
        }
        None => Key::Short,
    }
}

pub(crate) fn utf8_len(lead: u8) -> usize {
    match lead {
        0x00..=0x7F => 1,
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xFF => 4,
        // A continuation byte: not a position at all.
        _ => 1,
    }
}

#[derive(Debug)]
pub(crate) struct StartFilter {
    /// Bloom filter over long keys and one-character terms' characters.
    bloom: Vec<u64>,
    shift: u32,
    /// ASCII-led terms of two or three bytes, by their first two bytes.
    short2: Vec<u64>,
    /// One-byte terms.
    short1: [u64; 4],
}

const HASH: u64 = 0x9E37_79B9_7F4A_7C15;

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
        if let Key::Long(key) = key_at(term, 0) {
            self.set(key);
        } else if lead >= 0x80 {
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
        let bit = (key.wrapping_mul(HASH) >> self.shift) as usize;
        self.bloom[bit / 64] |= 1 << (bit % 64);
    }

    fn test(&self, key: u64) -> bool {
        let bit = (key.wrapping_mul(HASH) >> self.shift) as usize;
        self.bloom[bit / 64] & (1 << (bit % 64)) != 0
    }

    /// Whether a term could start at `at` (a character boundary) of
    /// `bytes`. `horizon`: a key reaching past it is treated as incomplete
    /// (a stream's undecided trailing separators may still be dropped).
    #[inline]
    pub fn may_start(&self, bytes: &[u8], at: usize, horizon: usize) -> bool {
        let lead = bytes[at];
        let visible = &bytes[..horizon.max(at + 1).min(bytes.len())];
        if lead < 0x80 {
            if self.short1[usize::from(lead / 64)] & (1 << (lead % 64)) != 0 {
                return true;
            }
            if !self.short2.is_empty() {
                match visible.get(at + 1) {
                    Some(&next) => {
                        let pair = usize::from(u16::from_le_bytes([lead, next]));
                        if self.short2[pair / 64] & (1 << (pair % 64)) != 0 {
                            return true;
                        }
                    }
                    None => return true,
                }
            }
        } else if self.test(char_key(visible, at)) {
            return true;
        }
        match key_at(visible, at) {
            Key::Long(key) => self.test(key),
            Key::Short => true,
        }
    }

    pub fn memory_usage(&self) -> usize {
        (self.bloom.len() + self.short2.len()) * 8 + 32
    }
}

/// A one-character key: the character's bytes.
fn char_key(bytes: &[u8], at: usize) -> u64 {
    let len = utf8_len(bytes[at]).min(bytes.len() - at);
    let mut key = [0u8; 8];
    key[..len].copy_from_slice(&bytes[at..at + len]);
    // Distinct from any long key, whose second character fills more bytes.
    key[7] = 0xFF;
    u64::from_le_bytes(key)
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
