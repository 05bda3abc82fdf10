//! IPv4 addresses: four dot-separated parts of 1-3 digits, each at most
//! 255, not part of a longer dotted number (`1.2.3.4.5`, `v1.2.3.4`) and not
//! glued to letters or digits.

use super::{Found, is_word_byte};
use crate::spec::RuleKind;

/// Finds every address in `hay[from..]`. For a stream, also returns where a
/// trailing dotted number that could still become an address begins.
pub(crate) fn scan(
    hay: &[u8],
    runs: &[usize],
    stream: bool,
    found: &mut Vec<Found>,
) -> Option<usize> {
    let mut at = 0;
    for &start in runs {
        if start < at {
            continue;
        }
        let token = Token::parse(hay, start);
        at = token.end;
        let left_ok = match start.checked_sub(1).map(|i| hay[i]) {
            None => true,
            Some(prev) => !is_word_byte(prev) && prev != b'.',
        };
        if !left_ok {
            continue;
        }
        let open = token.end == hay.len() || (token.end + 1 == hay.len() && hay[token.end] == b'.');
        if stream && open {
            return token.may_become_address().then_some(start);
        }
        let right_ok = !hay.get(token.end).is_some_and(|&b| is_word_byte(b));
        if right_ok && token.is_address() {
            found.push(Found {
                kind: RuleKind::Ipv4,
                start,
                end: token.end,
            });
        }
    }
    None
}

/// A maximal dotted number: digits (`.` digits)*.
struct Token {
    end: usize,
    /// Values and widths of the first four parts.
    parts: [(u16, u8); 4],
    count: usize,
    /// A part wider than three digits.
    too_wide: bool,
}

impl Token {
    fn parse(hay: &[u8], start: usize) -> Token {
        let mut token = Token {
            end: start,
            parts: [(0, 0); 4],
            count: 0,
            too_wide: false,
        };
        let mut at = start;
        loop {
            let width = hay[at..].iter().take_while(|b| b.is_ascii_digit()).count();
            if width > 3 {
                token.too_wide = true;
            }
            if token.count < 4 {
                let value = hay[at..at + width.min(3)]
                    .iter()
                    .fold(0u16, |v, &d| v * 10 + u16::from(d - b'0'));
                token.parts[token.count] = (value, width.min(3) as u8);
            }
            token.count += 1;
            at += width;
            token.end = at;
            match (hay.get(at), hay.get(at + 1)) {
                (Some(b'.'), Some(d)) if d.is_ascii_digit() => at += 1,
                _ => return token,
            }
        }
    }

    fn is_address(&self) -> bool {
        self.count == 4 && !self.too_wide && self.parts.iter().all(|&(value, _)| value <= 255)
    }

    /// With more digits or parts to come, could it still be an address?
    fn may_become_address(&self) -> bool {
        self.count <= 4
            && !self.too_wide
            && self.parts[..self.count]
                .iter()
                .all(|&(value, _)| value <= 255)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addresses(text: &str) -> Vec<String> {
        let mut found = Vec::new();
        scan(
            text.as_bytes(),
            &super::super::digit_runs(text.as_bytes(), 0),
            false,
            &mut found,
        );
        found
            .into_iter()
            .map(|f| text[f.start..f.end].to_owned())
            .collect()
    }

    #[test]
    fn finds_addresses() {
        assert_eq!(addresses("host 192.168.1.10."), ["192.168.1.10"]);
        assert_eq!(addresses("(10.0.0.1)和8.8.8.8"), ["10.0.0.1", "8.8.8.8"]);
    }

    #[test]
    fn rejects_other_dotted_numbers() {
        assert!(addresses("256.1.1.1").is_empty());
        assert!(addresses("1.2.3.4.5").is_empty());
        assert!(addresses("v1.2.3.4").is_empty());
        assert!(addresses("1.2.3").is_empty());
        assert!(addresses("1.2.3.4a").is_empty());
        assert!(addresses("1234.1.1.1").is_empty());
    }

    #[test]
    fn stream_hold() {
        let mut found = Vec::new();
        assert_eq!(
            scan(
                b"ip 10.0.",
                &super::super::digit_runs(b"ip 10.0.", 0),
                true,
                &mut found
            ),
            Some(3)
        );
        assert_eq!(
            scan(
                b"ip 10.0.0.1",
                &super::super::digit_runs(b"ip 10.0.0.1", 0),
                true,
                &mut found
            ),
            Some(3)
        );
        assert_eq!(
            scan(
                b"ip 10.0.0.1.2",
                &super::super::digit_runs(b"ip 10.0.0.1.2", 0),
                true,
                &mut found
            ),
            None
        );
        assert_eq!(
            scan(
                b"ip 300",
                &super::super::digit_runs(b"ip 300", 0),
                true,
                &mut found
            ),
            None
        );
        assert!(found.is_empty());
    }
}
