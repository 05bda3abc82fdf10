//! Data-leak detectors: e-mail, phone numbers, resident IDs, bank cards,
//! IPv4 addresses and secrets, each validated to keep false positives down.
//! They read the original text (no normalisation: their offsets are exact
//! and their syntax is ASCII).
//!
//! Every detector reads `hay[from..]`, may look at a few bytes before
//! `from` (a stream's released text) to see what a match is glued to, and
//! for a stream says where trailing text that could still extend into a
//! match begins.

mod email;
mod ipv4;
mod numbers;
mod secret;

use crate::spec::RuleKind;

/// A detector match, in offsets of the text scanned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Found {
    pub kind: RuleKind,
    pub start: usize,
    pub end: usize,
}

/// Which detectors to run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Kinds {
    pub email: bool,
    pub phone: bool,
    pub resident_id: bool,
    pub bank_card: bool,
    pub ipv4: bool,
    pub secret: bool,
}

impl Kinds {
    pub fn add(&mut self, kind: RuleKind) {
        match kind {
            RuleKind::Email => self.email = true,
            RuleKind::Phone => self.phone = true,
            RuleKind::ResidentId => self.resident_id = true,
            RuleKind::BankCard => self.bank_card = true,
            RuleKind::Ipv4 => self.ipv4 = true,
            RuleKind::Secret => self.secret = true,
            RuleKind::Words | RuleKind::Regex => {}
        }
    }

    pub fn any(self) -> bool {
        self != Kinds::default()
    }
}

/// Runs the detectors in `kinds` over `hay[from..]`, appending matches to
/// `found` (in no particular order). With `stream`, returns the earliest
/// offset from which text could still become part of a match, and adds to
/// `spans` the stretches a stream must not be cut inside (number runs,
/// e-mail candidates), because a scan restarting inside one would read
/// it differently.
pub(crate) fn scan(
    hay: &str,
    from: usize,
    stream: bool,
    kinds: Kinds,
    found: &mut Vec<Found>,
    spans: &mut Vec<(usize, usize)>,
) -> Option<usize> {
    let bytes = hay.as_bytes();
    let mut hold: Option<usize> = None;
    let mut merge = |h: Option<usize>| {
        if let Some(h) = h {
            hold = Some(hold.map_or(h, |old| old.min(h)));
        }
    };
    let numbers = kinds.phone || kinds.resident_id || kinds.bank_card;
    if numbers || kinds.ipv4 {
        // Both read digit runs: find them once.
        let runs = digit_runs(bytes, from);
        if numbers {
            let wanted = (kinds.phone, kinds.resident_id, kinds.bank_card);
            merge(numbers::scan(
                bytes, from, &runs, stream, wanted, found, spans,
            ));
        }
        if kinds.ipv4 {
            merge(ipv4::scan(bytes, &runs, stream, found));
        }
    }
    if kinds.email {
        merge(email::scan(bytes, from, stream, found, spans));
    }
    if kinds.secret {
        merge(secret::scan(bytes, from, stream, found));
    }
    hold
}

/// What a detector match's hash covers: the value in one canonical form,
/// so the same value written two ways correlates (`138 0013 8000` and
/// `13800138000`; `John@Example.com` and `john@example.com`).
pub(crate) fn canonical(kind: RuleKind, matched: &str) -> String {
    match kind {
        RuleKind::Phone | RuleKind::BankCard => matched
            .chars()
            .filter(|c| c.is_ascii_digit() || *c == '+')
            .collect(),
        RuleKind::ResidentId => matched
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .map(|c| c.to_ascii_uppercase())
            .collect(),
        RuleKind::Email => matched.to_ascii_lowercase(),
        _ => matched.to_owned(),
    }
}

pub(crate) fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Where each run of ASCII digits in `hay[from..]` starts.
pub(crate) fn digit_runs(hay: &[u8], from: usize) -> Vec<usize> {
    let mut runs = Vec::new();
    let mut at = from;
    while let Some(digit) = find_digit(hay, at) {
        runs.push(digit);
        at = digit
            + 1
            + hay[digit + 1..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count();
    }
    runs
}

/// The first ASCII digit in `hay[from..]`, eight bytes at a time.
pub(crate) fn find_digit(hay: &[u8], from: usize) -> Option<usize> {
    const ONES: u64 = u64::MAX / 255;
    const LOW7: u64 = ONES * 127;
    const HIGH: u64 = ONES * 128;
    let mut at = from;
    while let Some(chunk) = hay.get(at..at + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word);
        // Bit hack "has a byte between m and n" with m = '0' - 1, n = '9' + 1.
        let low = x & LOW7;
        let between = (ONES.wrapping_mul(127 + 0x3A).wrapping_sub(low))
            & !x
            & low.wrapping_add(ONES.wrapping_mul(127 - 0x2F))
            & HIGH;
        if between != 0 {
            break;
        }
        at += 8;
    }
    hay.get(at..)?
        .iter()
        .position(u8::is_ascii_digit)
        .map(|i| at + i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_digit_agrees_with_a_plain_search() {
        let texts: [&[u8]; 5] = [
            b"no digits here at all, none",
            b"abcdefgh1",
            b"abcdefghijklmnop/:9",
            "中文中文中文中文7".as_bytes(),
            b"0",
        ];
        for text in texts {
            for from in 0..text.len() {
                let expected = text[from..]
                    .iter()
                    .position(u8::is_ascii_digit)
                    .map(|i| from + i);
                assert_eq!(find_digit(text, from), expected);
            }
        }
    }

    #[test]
    fn canonical_forms() {
        assert_eq!(canonical(RuleKind::Phone, "138 0013-8000"), "13800138000");
        assert_eq!(
            canonical(RuleKind::Email, "John@Example.COM"),
            "john@example.com"
        );
        assert_eq!(
            canonical(RuleKind::ResidentId, "11010519491231002x"),
            "11010519491231002X"
        );
    }
}
