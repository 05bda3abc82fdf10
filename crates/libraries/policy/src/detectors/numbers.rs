//! Phone numbers, mainland-China resident ID numbers and bank card numbers:
//! runs of digits, validated.
//!
//! A run is digit groups joined by one kind of separator (space or hyphen),
//! optionally led by `+` (E.164) and, for an ID, ended by `X`. Groups join
//! only while the grouping can still be one of the shapes these numbers are
//! written in (mobile 3-4-4, ID 6-8-4, card 4-4-4-4(-1..4) or 4-6-5/4-6-4,
//! `+` numbers any grouping up to 15 digits); otherwise the next group
//! starts a new run. A run glued to letters or to a longer number (a digit,
//! or `.`/`,` then a digit, on either side) is never flagged, so a 16-digit
//! number inside a 20-digit one is not a card. Runs are decided left to
//! right, so a stream that restarts at a run's start decides the same way.

use crate::spec::RuleKind;

use super::{Found, is_word_byte};

const MAX_GROUPS: usize = 8;

#[derive(Clone, Copy, Debug, Default)]
struct Run {
    start: usize,
    end: usize,
    plus: bool,
    groups: [u8; MAX_GROUPS],
    len: usize,
    digits: usize,
    check_x: bool,
    /// Not glued to what precedes it.
    left_ok: bool,
}

impl Run {
    fn groups(&self) -> &[u8] {
        &self.groups[..self.len]
    }

    /// Could the run, with its last group possibly longer, still be one of
    /// the shapes? Shorter-or-equal tests make this monotone: a run that
    /// stops fitting never fits again.
    fn fits(&self) -> bool {
        let groups = self.groups();
        if !self.left_ok {
            return groups.len() == 1;
        }
        if self.plus {
            return self.digits <= 15;
        }
        if groups.len() == 1 {
            return self.digits <= 19;
        }
        let (last, init) = match groups.split_last() {
            Some(split) => split,
            None => return false,
        };
        let prefix_of = |shape: &[u8]| {
            groups.len() <= shape.len()
                && init.iter().zip(shape).all(|(g, s)| g == s)
                && *last <= shape[groups.len() - 1]
        };
        prefix_of(&[3, 4, 4])
            || prefix_of(&[6, 8, 4])
            || prefix_of(&[4, 6, 5])
            || (groups.len() <= 5 && init.iter().all(|&g| g == 4) && *last <= 4)
    }
}

/// Finds every phone number / ID / card in `hay[from..]`. Returns, for a
/// stream, where a run that could still become one begins.
pub(crate) fn scan(
    hay: &[u8],
    from: usize,
    runs: &[usize],
    stream: bool,
    kinds: (bool, bool, bool),
    found: &mut Vec<Found>,
    spans: &mut Vec<(usize, usize)>,
) -> Option<usize> {
    let (phone, resident_id, bank_card) = kinds;
    let mut hold = None;
    let mut at = from;
    for &digit in runs {
        if digit < at {
            continue;
        }
        let run = parse(hay, digit);
        at = run.end.max(digit + 1);
        if run.start < from {
            // Led by a `+` in the stream's released text: decided then.
            continue;
        }
        if stream {
            spans.push((run.start, run.end));
        }
        let open = is_open(hay, &run);
        if open && stream {
            if run.left_ok && run.fits() && hold.is_none() {
                hold = Some(run.start);
            }
            continue;
        }
        if !run.left_ok || !right_ok(hay, run.end) || run.digits > 19 {
            continue;
        }
        let mut digits = [0u8; 19];
        let mut n = 0;
        for &b in &hay[run.start..run.end] {
            if b.is_ascii_digit() && n < digits.len() {
                digits[n] = b - b'0';
                n += 1;
            }
        }
        let digits = &digits[..n];
        // Each kind on its own: an 18-digit run can pass both the ID
        // checksum and Luhn.
        for (wanted, kind, test) in [
            (phone, RuleKind::Phone, is_phone as fn(&Run, &[u8]) -> bool),
            (resident_id, RuleKind::ResidentId, is_resident_id),
            (bank_card, RuleKind::BankCard, is_bank_card),
        ] {
            if wanted && test(&run, digits) {
                found.push(Found {
                    kind,
                    start: run.start,
                    end: run.end,
                });
            }
        }
    }
    // A trailing `+` may start an E.164 number.
    if stream && hold.is_none() && hay.len() > from && hay[hay.len() - 1] == b'+' {
        let plus = hay.len() - 1;
        if plus == 0 || !is_word_byte(hay[plus - 1]) {
            hold = Some(plus);
        }
    }
    hold
}

fn parse(hay: &[u8], digit: usize) -> Run {
    let plus = digit > 0 && hay[digit - 1] == b'+';
    let start = if plus { digit - 1 } else { digit };
    let mut run = Run {
        start,
        plus,
        left_ok: left_ok(hay, start),
        ..Run::default()
    };
    let mut at = digit;
    let mut separator = None;
    loop {
        let group_end = at + hay[at..].iter().take_while(|b| b.is_ascii_digit()).count();
        let width = group_end - at;
        if run.len == MAX_GROUPS {
            break;
        }
        let mut next = run;
        next.groups[next.len] = width.min(255) as u8;
        next.len += 1;
        next.digits += width;
        next.end = group_end;
        if run.len > 0 && !next.fits() {
            break;
        }
        run = next;
        // Join the next group only over the same separator.
        match (hay.get(group_end), hay.get(group_end + 1)) {
            (Some(&s), Some(d))
                if (s == b' ' || s == b'-')
                    && d.is_ascii_digit()
                    && separator.is_none_or(|x| x == s) =>
            {
                separator = Some(s);
                at = group_end + 1;
            }
            _ => break,
        }
    }
    if run.digits == 17 && !run.plus && matches!(hay.get(run.end), Some(b'X' | b'x')) {
        run.check_x = true;
        run.end += 1;
    }
    run
}

/// Nothing glued before: not a letter, digit or `_`, and not `.`/`,` right
/// after a digit (the tail of a decimal or a grouped number).
fn left_ok(hay: &[u8], start: usize) -> bool {
    let Some(&prev) = start.checked_sub(1).and_then(|i| hay.get(i)) else {
        return true;
    };
    if is_word_byte(prev) {
        return false;
    }
    let before = start.checked_sub(2).and_then(|i| hay.get(i));
    !(matches!(prev, b'.' | b',') && before.is_some_and(u8::is_ascii_digit))
}

fn right_ok(hay: &[u8], end: usize) -> bool {
    match hay.get(end) {
        None => true,
        Some(&b) if is_word_byte(b) => false,
        Some(b'.' | b',') => !hay.get(end + 1).is_some_and(u8::is_ascii_digit),
        Some(_) => true,
    }
}

/// Could text still to come change this run (it ends at the end of the
/// text, or only a separator or `.`/`,` follows it so far)?
fn is_open(hay: &[u8], run: &Run) -> bool {
    run.end == hay.len()
        || (run.end + 1 == hay.len() && matches!(hay[run.end], b' ' | b'-' | b'.' | b','))
}

fn is_phone(run: &Run, digits: &[u8]) -> bool {
    if run.check_x {
        return false;
    }
    if run.plus {
        return (8..=15).contains(&digits.len()) && digits[0] != 0;
    }
    digits.len() == 11
        && digits[0] == 1
        && (3..=9).contains(&digits[1])
        && (run.groups() == [11] || run.groups() == [3, 4, 4])
}

/// GB 11643: 17 digits (6 region, 8 birth date, 3 sequence) and a check
/// character.
fn is_resident_id(run: &Run, digits: &[u8]) -> bool {
    if run.plus {
        return false;
    }
    let shape_ok = match (run.check_x, run.groups()) {
        (false, [18]) | (false, [6, 8, 4]) => digits.len() == 18,
        (true, [17]) | (true, [6, 8, 3]) => digits.len() == 17,
        _ => false,
    };
    if !shape_ok || !is_region(digits[0] * 10 + digits[1]) {
        return false;
    }
    const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    let sum: u32 = digits[..17]
        .iter()
        .zip(WEIGHTS)
        .map(|(&d, w)| u32::from(d) * w)
        .sum();
    // Check character for sum % 11 = 0, 1, 2, ...: 1 0 X 9 8 7 6 5 4 3 2.
    let expected = (12 - sum % 11) % 11;
    let actual = if run.check_x {
        10
    } else {
        u32::from(digits[17])
    };
    expected == actual && is_birth_date(&digits[6..14])
}

/// Province-level region codes (first two digits).
fn is_region(code: u8) -> bool {
    matches!(code, 11..=15 | 21..=23 | 31..=37 | 41..=46 | 50..=54 | 61..=65 | 71 | 81..=83 | 91)
}

fn is_birth_date(d: &[u8]) -> bool {
    let number = |s: &[u8]| s.iter().fold(0u32, |n, &d| n * 10 + u32::from(d));
    let (year, month, day) = (number(&d[..4]), number(&d[4..6]), number(&d[6..8]));
    let leap = year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400));
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1900..=2099).contains(&year) && (1..=days).contains(&day)
}

fn is_bank_card(run: &Run, digits: &[u8]) -> bool {
    if run.plus
        || run.check_x
        || !(13..=19).contains(&digits.len())
        || !(2..=6).contains(&digits[0])
    {
        return false;
    }
    let groups = run.groups();
    let shape_ok = match groups {
        [_] => true,
        [4, 6, 5] | [4, 6, 4] => true,
        [init @ .., last] => init.iter().all(|&g| g == 4) && (1..=4).contains(last),
        [] => false,
    };
    shape_ok && luhn(digits)
}

fn luhn(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 1 {
                if d * 2 > 9 { d * 2 - 9 } else { d * 2 }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds_in(text: &str) -> Vec<(RuleKind, String)> {
        let mut found = Vec::new();
        let runs = super::super::digit_runs(text.as_bytes(), 0);
        scan(
            text.as_bytes(),
            0,
            &runs,
            false,
            (true, true, true),
            &mut found,
            &mut Vec::new(),
        );
        found
            .into_iter()
            .map(|f| (f.kind, text[f.start..f.end].to_owned()))
            .collect()
    }

    fn one(kind: RuleKind, s: &str) -> Vec<(RuleKind, String)> {
        vec![(kind, s.to_owned())]
    }

    #[test]
    fn mobile_numbers() {
        assert_eq!(
            kinds_in("电话13800138000，"),
            one(RuleKind::Phone, "13800138000")
        );
        assert_eq!(
            kinds_in("call 138 0013 8000 now"),
            one(RuleKind::Phone, "138 0013 8000")
        );
        assert_eq!(
            kinds_in("call 138-0013-8000."),
            one(RuleKind::Phone, "138-0013-8000")
        );
        assert_eq!(
            kinds_in("+86 138 0013 8000"),
            one(RuleKind::Phone, "+86 138 0013 8000")
        );
        assert_eq!(
            kinds_in("+8613800138000"),
            one(RuleKind::Phone, "+8613800138000")
        );
        assert_eq!(
            kinds_in("+1 415 555 2671"),
            one(RuleKind::Phone, "+1 415 555 2671")
        );
        assert!(kinds_in("12800138000").is_empty());
        assert!(kinds_in("138001380001").is_empty());
        assert!(kinds_in("a13800138000").is_empty());
        assert!(kinds_in("13800138000b").is_empty());
        assert!(kinds_in("3.13800138000").is_empty());
        assert!(kinds_in("1+12345").is_empty());
    }

    #[test]
    fn resident_ids() {
        assert_eq!(
            kinds_in("身份证11010519491231002X。"),
            one(RuleKind::ResidentId, "11010519491231002X")
        );
        assert_eq!(
            kinds_in("ID 440304199003074510"),
            one(RuleKind::ResidentId, "440304199003074510")
        );
        assert_eq!(
            kinds_in("440304 19900307 4510"),
            one(RuleKind::ResidentId, "440304 19900307 4510")
        );
        // Wrong check digit, impossible date, unknown region.
        assert!(kinds_in("440304199003074511").is_empty());
        assert!(kinds_in("11010519491231002Y").is_empty());
        assert!(kinds_in("440304199013074510").is_empty());
        assert!(kinds_in("990304199003074510").is_empty());
        // Inside a longer run.
        assert!(kinds_in("1440304199003074510").is_empty());
        assert!(kinds_in("440304199003074510x").is_empty());
    }

    #[test]
    fn bank_cards() {
        assert_eq!(
            kinds_in("card 4111111111111111."),
            one(RuleKind::BankCard, "4111111111111111")
        );
        assert_eq!(
            kinds_in("4111 1111 1111 1111"),
            one(RuleKind::BankCard, "4111 1111 1111 1111")
        );
        assert_eq!(
            kinds_in("4111-1111-1111-1111"),
            one(RuleKind::BankCard, "4111-1111-1111-1111")
        );
        assert_eq!(
            kinds_in("3782 822463 10005"),
            one(RuleKind::BankCard, "3782 822463 10005")
        );
        assert_eq!(
            kinds_in("卡号6222021234567890128"),
            one(RuleKind::BankCard, "6222021234567890128")
        );
        // Not Luhn; inside a longer run; glued to letters; odd grouping.
        assert!(kinds_in("4111111111111112").is_empty());
        assert!(kinds_in("41111111111111110000").is_empty());
        assert!(kinds_in("x4111111111111111").is_empty());
        assert!(kinds_in("41 11 11 11 11 11 11 11").is_empty());
        assert!(kinds_in("1.4111111111111111").is_empty());
    }

    #[test]
    fn separate_numbers_in_one_line() {
        let found = kinds_in("4111 1111 1111 1111 13800138000");
        assert_eq!(
            found,
            vec![
                (RuleKind::BankCard, "4111 1111 1111 1111".to_owned()),
                (RuleKind::Phone, "13800138000".to_owned())
            ]
        );
    }

    fn hold(text: &[u8]) -> Option<usize> {
        let runs = super::super::digit_runs(text, 0);
        scan(
            text,
            0,
            &runs,
            true,
            (true, true, true),
            &mut Vec::new(),
            &mut Vec::new(),
        )
    }

    #[test]
    fn stream_hold_covers_a_run_in_progress() {
        let text = b"call 138 0013";
        assert_eq!(hold(text), Some(5));
        assert_eq!(hold(b"year 2024 "), Some(5));
        assert_eq!(hold(b"year 2024!"), None);
        assert_eq!(hold(b"dial +"), Some(5));
        // Too long to become anything.
        assert_eq!(hold(b"12345678901234567890"), None);
    }
}
