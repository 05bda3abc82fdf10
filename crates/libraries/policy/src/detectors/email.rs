//! E-mail addresses: `local@domain.tld` with an ASCII local part of 1-64
//! characters (`A-Z a-z 0-9 . _ % + -`, no `..`, not ending in `.`) and a
//! domain of at least two labels (1-63 letters, digits, inner hyphens) whose
//! last is 2+ letters.

use super::Found;
use crate::spec::RuleKind;

const MAX_LOCAL: usize = 64;
const MAX_DOMAIN: usize = 253;

fn is_local(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-')
}

fn is_domain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-')
}

/// Finds every address in `hay[from..]`. For a stream, also returns where
/// trailing text that could still become (part of) an address begins: a
/// trailing local part (it may be followed by `@`), or an address whose
/// domain may still grow.
pub(crate) fn scan(
    hay: &[u8],
    from: usize,
    stream: bool,
    found: &mut Vec<Found>,
    spans: &mut Vec<(usize, usize)>,
) -> Option<usize> {
    let mut at = from;
    while let Some(offset) = memchr::memchr(b'@', &hay[at..]) {
        let sign = at + offset;
        at = sign + 1;
        let local_start = sign
            - hay[..sign]
                .iter()
                .rev()
                .take_while(|&&b| is_local(b))
                .count();
        let local_start = local_start
            + hay[local_start..sign]
                .iter()
                .take_while(|&&b| b == b'.')
                .count();
        let domain_end = at + hay[at..].iter().take_while(|&&b| is_domain(b)).count();
        if stream && local_start >= from {
            spans.push((local_start, domain_end));
        }
        if local_start < from || (stream && domain_end == hay.len()) {
            continue;
        }
        let mut end = domain_end;
        while end > at && matches!(hay[end - 1], b'.' | b'-') {
            end -= 1;
        }
        if valid_local(&hay[local_start..sign]) && valid_domain(&hay[at..end]) {
            found.push(Found {
                kind: RuleKind::Email,
                start: local_start,
                end,
            });
            at = end;
        }
    }
    if stream { hold(hay, from) } else { None }
}

fn valid_local(local: &[u8]) -> bool {
    !local.is_empty()
        && local.len() <= MAX_LOCAL
        && local.last() != Some(&b'.')
        && !local.windows(2).any(|w| w == b"..")
}

fn valid_domain(domain: &[u8]) -> bool {
    if domain.len() > MAX_DOMAIN {
        return false;
    }
    let mut labels = 0;
    let mut last: &[u8] = &[];
    for label in domain.split(|&b| b == b'.') {
        let edges_ok = label.first().is_some_and(u8::is_ascii_alphanumeric)
            && label.last().is_some_and(u8::is_ascii_alphanumeric);
        if !edges_ok || label.len() > 63 {
            return false;
        }
        labels += 1;
        last = label;
    }
    labels >= 2 && last.len() >= 2 && last.iter().all(u8::is_ascii_alphabetic)
}

fn hold(hay: &[u8], from: usize) -> Option<usize> {
    let end = hay.len();
    // A trailing local part: `@` may follow.
    let run = local_run(hay, from, end);
    let mut hold = (run.0 < end && end - run.1 <= MAX_LOCAL).then_some(run.0);
    // `local@domain-so-far`: the domain may still grow.
    let domain_len = hay[from..]
        .iter()
        .rev()
        .take_while(|&&b| is_domain(b))
        .count();
    let sign = end - domain_len;
    if sign > from && hay[sign - 1] == b'@' && domain_len <= MAX_DOMAIN {
        let (start, trimmed) = local_run(hay, from, sign - 1);
        if start < sign - 1 && (1..=MAX_LOCAL).contains(&(sign - 1 - trimmed)) {
            hold = Some(hold.map_or(start, |h| h.min(start)));
        }
    }
    hold
}

/// The run of local-part characters ending at `end` (not before `from`):
/// its start, and its start past leading dots (which are not part of an
/// address).
fn local_run(hay: &[u8], from: usize, end: usize) -> (usize, usize) {
    let start = end
        - hay[from..end]
            .iter()
            .rev()
            .take_while(|&&b| is_local(b))
            .count();
    let trimmed = start + hay[start..end].iter().take_while(|&&b| b == b'.').count();
    (start, trimmed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emails(text: &str) -> Vec<String> {
        let mut found = Vec::new();
        scan(text.as_bytes(), 0, false, &mut found, &mut Vec::new());
        found
            .into_iter()
            .map(|f| text[f.start..f.end].to_owned())
            .collect()
    }

    #[test]
    fn finds_addresses() {
        assert_eq!(
            emails("mail john.doe+x@example.co.uk."),
            ["john.doe+x@example.co.uk"]
        );
        assert_eq!(
            emails("联系我：zhang_san@qq.com，谢谢"),
            ["zhang_san@qq.com"]
        );
        assert_eq!(emails("<a@b.io> and c@d.org"), ["a@b.io", "c@d.org"]);
    }

    #[test]
    fn rejects_lookalikes() {
        assert!(emails("@handle").is_empty());
        assert!(emails("user@localhost").is_empty());
        assert!(emails("a..b@example.com").is_empty());
        assert!(emails("user@-example.com").is_empty());
        assert!(emails("user@example.c0m").is_empty());
        assert!(emails("version 1.2@3.4").is_empty());
    }

    #[test]
    fn stream_hold() {
        let mut found = Vec::new();
        assert_eq!(
            scan(b"write to john", 0, true, &mut found, &mut Vec::new()),
            Some(9)
        );
        assert_eq!(
            scan(b"write to john@", 0, true, &mut found, &mut Vec::new()),
            Some(9)
        );
        assert_eq!(
            scan(b"write to john@ex.co", 0, true, &mut found, &mut Vec::new()),
            Some(9)
        );
        assert_eq!(
            scan(
                b"write to john@ex.com ",
                0,
                true,
                &mut found,
                &mut Vec::new()
            ),
            None
        );
        assert_eq!(found.len(), 1);
        assert_eq!(
            scan("你好。".as_bytes(), 0, true, &mut found, &mut Vec::new()),
            None
        );
    }
}
