//! Secrets: API keys with well-known prefixes and PEM private keys.
//!
//! A key is its prefix, not glued to a letter or digit before it, and a
//! body: the maximal run of the characters that kind of key uses, of a
//! plausible length, not glued to a letter or digit after it. A PEM private
//! key is `-----BEGIN ... PRIVATE KEY-----` through its `-----END ...-----`
//! line (or, unterminated, through the base64 that follows the header).

use super::Found;
use crate::spec::RuleKind;

struct Family {
    prefix: &'static str,
    body: fn(u8) -> bool,
    min: usize,
    max: usize,
}

fn key_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}
fn upper_digit(b: u8) -> bool {
    b.is_ascii_uppercase() || b.is_ascii_digit()
}
fn alnum(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}
fn alnum_underscore(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}
fn alnum_dash(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-'
}

const PEM: &str = "-----BEGIN";
const MAX_PEM: usize = 16 * 1024;

/// Where one prefix extends another (`sk-`, `sk-proj-`), the longest
/// that matches wins.
const FAMILIES: &[Family] = &[
    Family {
        prefix: "sk-llmgw-",
        body: key_char,
        min: 16,
        max: 128,
    },
    Family {
        prefix: "sk-ant-",
        body: key_char,
        min: 32,
        max: 256,
    },
    Family {
        prefix: "sk-proj-",
        body: key_char,
        min: 20,
        max: 256,
    },
    Family {
        prefix: "sk-",
        body: key_char,
        min: 20,
        max: 256,
    },
    Family {
        prefix: "AKIA",
        body: upper_digit,
        min: 16,
        max: 16,
    },
    Family {
        prefix: "ASIA",
        body: upper_digit,
        min: 16,
        max: 16,
    },
    Family {
        prefix: "ghp_",
        body: alnum,
        min: 30,
        max: 255,
    },
    Family {
        prefix: "gho_",
        body: alnum,
        min: 30,
        max: 255,
    },
    Family {
        prefix: "ghs_",
        body: alnum,
        min: 30,
        max: 255,
    },
    Family {
        prefix: "ghu_",
        body: alnum,
        min: 30,
        max: 255,
    },
    Family {
        prefix: "ghr_",
        body: alnum,
        min: 30,
        max: 255,
    },
    Family {
        prefix: "github_pat_",
        body: alnum_underscore,
        min: 22,
        max: 255,
    },
    Family {
        prefix: "xoxb-",
        body: alnum_dash,
        min: 10,
        max: 255,
    },
    Family {
        prefix: "xoxp-",
        body: alnum_dash,
        min: 10,
        max: 255,
    },
    Family {
        prefix: "xoxa-",
        body: alnum_dash,
        min: 10,
        max: 255,
    },
    Family {
        prefix: "xoxs-",
        body: alnum_dash,
        min: 10,
        max: 255,
    },
    Family {
        prefix: "xoxr-",
        body: alnum_dash,
        min: 10,
        max: 255,
    },
    Family {
        prefix: "AIza",
        body: key_char,
        min: 35,
        max: 35,
    },
];

/// Where each prefix has its first `-` or `_` (or `A` for the AWS and
/// Google keys): a prefix occurrence is found from that byte.
fn anchor_offset(prefix: &str) -> usize {
    prefix.find(['-', '_']).unwrap_or(0)
}

/// The longest known prefix starting at `at`: its index in [`FAMILIES`]
/// (`FAMILIES.len()` for PEM).
fn prefix_at(hay: &[u8], at: usize) -> Option<usize> {
    let rest = &hay[at..];
    let mut best: Option<(usize, usize)> = None;
    for (index, prefix) in all_prefixes().enumerate() {
        if rest.starts_with(prefix.as_bytes()) && best.is_none_or(|(_, len)| prefix.len() > len) {
            best = Some((index, prefix.len()));
        }
    }
    best.map(|(index, _)| index)
}

/// Every prefix occurrence starting in `hay[from..]`, in order: (start,
/// prefix index). Found from the rarer bytes `-`, `_` and `A` with
/// `memchr` rather than by trying every position.
fn prefix_occurrences(hay: &[u8], from: usize) -> Vec<(usize, usize)> {
    let mut found = Vec::new();
    for anchor in memchr::memchr3_iter(b'-', b'_', b'A', &hay[from..]) {
        let anchor = from + anchor;
        for prefix in all_prefixes() {
            let offset = anchor_offset(prefix);
            if prefix.as_bytes()[offset] != hay[anchor] {
                continue;
            }
            let Some(start) = anchor.checked_sub(offset).filter(|&s| s >= from) else {
                continue;
            };
            if let Some(index) = prefix_at(hay, start) {
                found.push((start, index));
            }
        }
    }
    found.sort_unstable();
    found.dedup();
    found
}

/// Finds every secret in `hay[from..]`. For a stream, also returns where a
/// secret still in progress (or a prefix of one) begins.
pub(crate) fn scan(hay: &[u8], from: usize, stream: bool, found: &mut Vec<Found>) -> Option<usize> {
    let mut at = from;
    for (start, index) in prefix_occurrences(hay, from) {
        if start < at || (start > 0 && hay[start - 1].is_ascii_alphanumeric()) {
            continue;
        }
        let (end, open) = match FAMILIES.get(index) {
            Some(family) => key(hay, start + family.prefix.len(), family),
            None => pem(hay, start + PEM.len()),
        };
        if open && stream {
            return Some(start);
        }
        if let Some(end) = end {
            found.push(Found {
                kind: RuleKind::Secret,
                start,
                end,
            });
            at = end;
        }
    }
    if stream {
        partial_prefix(hay, from)
    } else {
        None
    }
}

/// The key's end (if it is one, were the text to end here) and whether
/// text still to come could change that.
fn key(hay: &[u8], body_start: usize, family: &Family) -> (Option<usize>, bool) {
    let body = hay[body_start..]
        .iter()
        .take(family.max + 1)
        .take_while(|&&b| (family.body)(b))
        .count();
    let end = body_start + body;
    if body > family.max {
        return (None, false);
    }
    match hay.get(end) {
        None => ((body >= family.min).then_some(end), true),
        Some(b) if b.is_ascii_alphanumeric() => (None, false),
        Some(_) => ((body >= family.min).then_some(end), false),
    }
}

fn pem_header_char(b: u8) -> bool {
    b.is_ascii_uppercase() || b == b' '
}

fn pem_body_char(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'+' | b'/' | b'=' | b':' | b',' | b'.' | b'-' | b' ' | b'\t' | b'\r' | b'\n'
        )
}

/// A PEM private key whose `-----BEGIN` ends at `after`: its end (were
/// the text to end here) and whether text still to come could change it.
fn pem(hay: &[u8], after: usize) -> (Option<usize>, bool) {
    let label_len = hay[after..]
        .iter()
        .take(48)
        .take_while(|&&b| pem_header_char(b))
        .count();
    let label = &hay[after..after + label_len];
    let dashes = after + label_len;
    let rest = &hay[dashes..hay.len().min(dashes + 5)];
    if label_len < 48 && rest.len() < 5 && b"-----".starts_with(rest) {
        return (None, true);
    }
    if !label.trim_ascii().ends_with(b"PRIVATE KEY") || rest != b"-----" {
        return (None, false);
    }
    let body_start = dashes + 5;
    let body_len = hay[body_start..]
        .iter()
        .take(MAX_PEM)
        .take_while(|&&b| pem_body_char(b))
        .count();
    let body = &hay[body_start..body_start + body_len];
    if let Some(end_at) = memchr::memmem::find(body, b"-----END") {
        let footer = &body[end_at + 8..];
        let label = footer
            .iter()
            .take(48)
            .take_while(|&&b| pem_header_char(b))
            .count();
        if footer[label..].starts_with(b"-----") {
            return (Some(body_start + end_at + 8 + label + 5), false);
        }
    }
    // The `-----END` line may still come.
    let open = body_start + body_len == hay.len() && body_len < MAX_PEM;
    // Unterminated: the header and the base64 lines after it.
    let mut end = body_start;
    let mut at = body_start;
    while at < hay.len() && at - body_start < MAX_PEM {
        let line_len = hay[at..].iter().take_while(|&&b| b != b'\n').count();
        let line = &hay[at..at + line_len];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let base64 = !line.is_empty()
            && line
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='));
        if base64 {
            end = at + line.len();
        } else if at != body_start {
            break;
        }
        at += line_len + 1;
    }
    (Some(end), open)
}

/// A trailing proper prefix of a known prefix (`sk`, `gith`, `-----BEG`).
fn partial_prefix(hay: &[u8], from: usize) -> Option<usize> {
    let (&last, tail) = hay[from..].split_last()?;
    // Cheap exits for the common case: the text's last byte is in no
    // prefix, or no prefix-initial byte is near the end.
    if !last.is_ascii_alphabetic() && last != b'-' && last != b'_' {
        return None;
    }
    let first = (from + tail.len()).saturating_sub(MAX_PREFIX - 2).max(from);
    (first..hay.len()).find(|&at| {
        matches!(hay[at], b's' | b'A' | b'g' | b'x' | b'-')
            && (at == 0 || !hay[at - 1].is_ascii_alphanumeric())
            && all_prefixes()
                .any(|p| p.len() > hay.len() - at && p.as_bytes().starts_with(&hay[at..]))
    })
}

/// "github_pat_", the longest prefix.
const MAX_PREFIX: usize = 11;

fn all_prefixes() -> impl Iterator<Item = &'static str> {
    FAMILIES.iter().map(|f| f.prefix).chain([PEM])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_facts_the_quick_exits_rely_on() {
        assert!(all_prefixes().all(|p| p.len() <= MAX_PREFIX));
        assert!(
            all_prefixes().all(|p| matches!(p.as_bytes()[0], b's' | b'A' | b'g' | b'x' | b'-'))
        );
        let bytes_ok = |b: u8| b.is_ascii_alphabetic() || b == b'-' || b == b'_';
        assert!(all_prefixes().all(|p| p.bytes().all(bytes_ok)));
        // Each prefix is found from a `-`, `_` or leading `A`.
        assert!(
            all_prefixes().all(|p| matches!(p.as_bytes()[anchor_offset(p)], b'-' | b'_' | b'A'))
        );
    }

    fn secrets(text: &str) -> Vec<String> {
        let mut found = Vec::new();
        scan(text.as_bytes(), 0, false, &mut found);
        found
            .into_iter()
            .map(|f| text[f.start..f.end].to_owned())
            .collect()
    }

    #[test]
    fn finds_keys() {
        let openai = "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z";
        let legacy = "sk-abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKL";
        let anthropic = "sk-ant-api03-abcdefghijklmnopqrstuvwxyz0123456789-_AA";
        let llmgw = "sk-llmgw-AbCdEfGhIjKlMnOpQrStUv123456";
        let aws = "AKIAIOSFODNN7EXAMPLE";
        let github = "ghp_abcdefghijklmnopqrstuvwxyz0123456789";
        let pat = "github_pat_11ABCDEFG0123456789_abcdefghijklmnop";
        let slack = "xoxb-1234567890-abcdefghij";
        let google = "AIzaSyA-abcdefghijklmnopqrstuvwxyz01234";
        for key in [
            openai, legacy, anthropic, llmgw, aws, github, pat, slack, google,
        ] {
            assert_eq!(secrets(&format!("key={key}\n")), [key], "{key}");
            assert_eq!(secrets(&format!("“{key}”")), [key], "{key}");
        }
    }

    #[test]
    fn rejects_lookalikes() {
        assert!(secrets("risk-assessment-of-the-whole-project-plan").is_empty());
        assert!(secrets("desk-abcdefghijklmnopqrstuvwxyz").is_empty());
        assert!(secrets("sk-short").is_empty());
        assert!(secrets("AKIAIOSFODNN7EXAMPLEX").is_empty());
        assert!(secrets("AKIAshort").is_empty());
        assert!(secrets("-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----").is_empty());
    }

    #[test]
    fn pem_blocks() {
        let block = "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA0Z3VS5JJcds3xfn/ygWyF8PbnGy0AHB7MhgHcTz6sE2I2yPB\naFDrBz9vFqU4yQ==\n-----END RSA PRIVATE KEY-----";
        assert_eq!(secrets(&format!("here:\n{block}\nthanks")), [block]);
        let open = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg\n";
        assert_eq!(secrets(&format!("{open}\n```")), [open.trim_end()]);
        assert_eq!(
            secrets(&format!("{open}\nPlease keep it safe.")),
            [open.trim_end()]
        );
    }

    #[test]
    fn stream_hold() {
        let mut found = Vec::new();
        assert_eq!(scan(b"use sk-abc", 0, true, &mut found), Some(4));
        assert_eq!(scan(b"use s", 0, true, &mut found), Some(4));
        assert_eq!(scan(b"use gith", 0, true, &mut found), Some(4));
        assert_eq!(scan(b"use ---", 0, true, &mut found), Some(4));
        assert_eq!(
            scan(
                b"-----BEGIN RSA PRIVATE KEY-----\nMIIE",
                0,
                true,
                &mut found
            ),
            Some(0)
        );
        assert_eq!(scan(b"use this", 0, true, &mut found), None);
        assert!(found.is_empty());
    }
}
