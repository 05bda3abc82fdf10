//! Secrets: API keys with well-known prefixes and PEM private keys.
//!
//! A key is its prefix, not glued to a letter or digit before it, and a
//! body: the maximal run of the characters that kind of key uses, of a
//! plausible length, not glued to a letter or digit after it. A PEM private
//! key is `-----BEGIN ... PRIVATE KEY-----` through its `-----END ...-----`
//! line (or, unterminated, through the base64 that follows the header).

use std::sync::OnceLock;

use aho_corasick::{AhoCorasick, Input, MatchKind};

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

/// Longest prefix first where one extends another is not needed: the
/// automaton is leftmost-longest.
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

fn prefixes() -> &'static AhoCorasick {
    static PREFIXES: OnceLock<AhoCorasick> = OnceLock::new();
    PREFIXES.get_or_init(|| {
        let patterns = FAMILIES.iter().map(|f| f.prefix).chain([PEM]);
        match AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(patterns)
        {
            Ok(ac) => ac,
            // A fixed, valid set of literals: cannot fail.
            Err(e) => unreachable!("secret prefixes: {e}"),
        }
    })
}

/// Builds the prefix automaton now rather than on the first request.
pub(crate) fn warm() {
    prefixes();
}

/// Finds every secret in `hay[from..]`. For a stream, also returns where a
/// secret still in progress (or a prefix of one) begins.
pub(crate) fn scan(hay: &[u8], from: usize, stream: bool, found: &mut Vec<Found>) -> Option<usize> {
    let ac = prefixes();
    let mut at = from;
    while at < hay.len() {
        let Some(m) = ac.find(Input::new(hay).range(at..)) else {
            break;
        };
        let start = m.start();
        at = start + 1;
        if start > 0 && hay[start - 1].is_ascii_alphanumeric() {
            continue;
        }
        let (end, open) = match FAMILIES.get(m.pattern().as_usize()) {
            Some(family) => key(hay, m.end(), family),
            None => pem(hay, m.end()),
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
    let longest = FAMILIES
        .iter()
        .map(|f| f.prefix.len())
        .chain([PEM.len()])
        .max()
        .unwrap_or(0);
    let first = from.max(hay.len().saturating_sub(longest - 1));
    (first..hay.len()).find(|&at| {
        let tail = &hay[at..];
        let starts_ok = at == 0 || !hay[at - 1].is_ascii_alphanumeric();
        starts_ok
            && FAMILIES
                .iter()
                .map(|f| f.prefix)
                .chain([PEM])
                .any(|p| p.len() > tail.len() && p.as_bytes().starts_with(tail))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
