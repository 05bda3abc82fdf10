//! Streaming: terms split across chunks are caught, only a partial match is
//! held back, and a stream's output and hits equal a check of the whole
//! answer whatever the chunking.

mod common;

use std::sync::{Arc, LazyLock};

use common::{compile, everything_redacted, with_blocks, words};
use llmgw_policy::{Action, Direction, Hit, Policy, StreamScanner};
use proptest::prelude::*;

/// Feeds `chunks` through a scanner: (released text, hits, blocked).
fn run(policy: &Arc<Policy>, chunks: &[&str]) -> (String, Vec<Hit>, bool) {
    let mut scanner: StreamScanner = policy.stream();
    let mut text = String::new();
    let mut hits = Vec::new();
    let mut blocked = false;
    for chunk in chunks {
        let scanned = scanner.push(chunk);
        text.push_str(&scanned.text);
        hits.extend(scanned.hits);
        blocked |= scanned.blocked;
    }
    let scanned = scanner.finish();
    text.push_str(&scanned.text);
    hits.extend(scanned.hits);
    (text, hits, blocked || scanned.blocked)
}

/// What a stream of `answer` must release: the whole-answer check, cut
/// before the first block (and a redaction overlapping it).
fn expected(policy: &Policy, answer: &str) -> (String, Vec<Hit>, bool) {
    let findings = policy.check(Direction::Output, answer);
    match findings.blocking() {
        None => (
            findings.redact(answer).into_owned(),
            findings.hits.clone(),
            false,
        ),
        Some(block) => {
            // Overlapping redactions merge (as `Findings::redact` does); a
            // merged one overlapping the block's start moves the cut to its
            // start.
            let mut stop = block.start;
            let mut merged: Vec<(usize, usize)> = Vec::new();
            for hit in findings.hits.iter().filter(|h| h.action == Action::Redact) {
                match merged.last_mut() {
                    Some(last) if hit.start < last.1 => last.1 = last.1.max(hit.end),
                    _ => merged.push((hit.start, hit.end)),
                }
            }
            for (start, end) in merged {
                if start < stop && stop < end {
                    stop = start;
                }
            }
            let hits: Vec<Hit> = findings
                .hits
                .iter()
                .filter(|h| h.start <= block.start)
                .cloned()
                .collect();
            let kept = llmgw_policy::Findings { hits: hits.clone() };
            (kept.redact(&answer[..stop]).into_owned(), hits, true)
        }
    }
}

#[test]
fn a_term_split_across_chunks_is_redacted() {
    let policy = compile(everything_redacted());
    let (text, hits, blocked) = run(&policy, &["这是敏", "感", "词吗"]);
    assert_eq!(text, "这是***吗");
    assert!(!blocked);
    assert_eq!(hits.iter().filter(|h| &*h.rule_id == "cn-words").count(), 1);
    let hit = hits
        .iter()
        .find(|h| &*h.rule_id == "cn-words")
        .map(|h| (h.start, h.end));
    assert_eq!(hit, Some(("这是".len(), "这是敏感词".len())));
}

#[test]
fn only_the_partial_match_is_held_back() {
    let policy = compile(vec![words("w", Action::Redact, &["敏感词"])]);
    let mut scanner = policy.stream();
    let first = scanner.push("你好");
    assert_eq!(first.text, "你好");
    assert_eq!(scanner.held_back(), 0);
    let second = scanner.push("，敏感");
    assert_eq!(second.text, "，");
    assert_eq!(scanner.held_back(), "敏感".len());
    let third = scanner.push("的东西");
    assert_eq!(third.text, "敏感的东西");
    assert_eq!(scanner.held_back(), 0);
}

#[test]
fn a_stream_without_possible_matches_is_released_at_once_byte_for_byte() {
    let policy = compile(everything_redacted());
    let mut scanner = policy.stream();
    for chunk in ["今天", "天气", "不错。", "适合", "出去走走！\n"] {
        let scanned = scanner.push(chunk);
        assert_eq!(scanned.text, chunk);
        assert!(scanned.hits.is_empty());
        assert_eq!(scanner.held_back(), 0);
    }
}

#[test]
fn block_cuts_before_the_match_and_releases_nothing_more() {
    let policy = compile(with_blocks());
    let mut scanner = policy.stream();
    let first = scanner.push("mail a@b.com then 炸");
    assert!(!first.blocked);
    let second = scanner.push("弹 and more");
    assert!(second.blocked);
    let released = format!("{}{}", first.text, second.text);
    assert_eq!(released, "mail [REDACTED:email] then ");
    let block = second
        .hits
        .iter()
        .find(|h| h.action == Action::Block)
        .map(|h| (h.start, h.end));
    let start = "mail a@b.com then ".len();
    assert_eq!(block, Some((start, start + "炸弹".len())));
    assert_eq!(scanner.push("more text"), Default::default());
    assert_eq!(scanner.finish(), Default::default());
}

#[test]
fn hits_offsets_are_relative_to_the_whole_answer() {
    let policy = compile(everything_redacted());
    let answer = "第一段。\n联系 13800138000 或 a@b.cn，勿传敏 感 词。";
    let chunks: Vec<String> = answer.chars().map(String::from).collect();
    let chunks: Vec<&str> = chunks.iter().map(String::as_str).collect();
    let (text, hits, _) = run(&policy, &chunks);
    let (want_text, want_hits, _) = expected(&policy, answer);
    assert_eq!(text, want_text);
    assert_eq!(hits, want_hits);
    for hit in &hits {
        assert!(answer.is_char_boundary(hit.start) && answer.is_char_boundary(hit.end));
    }
}

/// Pieces answers are made of: terms (plain and disguised), near misses,
/// data to detect, and filler.
const PIECES: &[&str] = &[
    // Terms and disguises.
    "敏感词",
    "敏 感 词",
    "敏*感*词",
    "敏\u{200B}感词",
    "敏感詞",
    "ＢＡＤＷＯＲＤ",
    "BadWord",
    "機密文件",
    "机密 文件",
    "测试",
    "Hello World",
    "炸弹",
    "炸 弹",
    "secretproject",
    "café",
    "cafe\u{301}",
    "CAFE\u{301}",
    // Near misses.
    "敏感",
    "敏",
    "感词",
    "bad",
    "word",
    "机密",
    "炸",
    "secret",
    "project",
    "hello",
    "caf",
    "cafe",
    "\u{301}",
    // Data.
    "a.b@example.com",
    "user@mail.example.org",
    "13800138000",
    "+86 138 0013 8000",
    "138-0013-8000",
    "11010519491231002X",
    "440304199003074510",
    "4111 1111 1111 1111",
    "4111111111111111",
    "4111111111111112",
    "6222021234567890128",
    "192.168.1.1",
    "10.0.0.",
    "1.2.3.4.5",
    "sk-proj-abcdefghijklmnopqrstuvwxyz123456",
    "AKIAIOSFODNN7EXAMPLE",
    "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
    "PROJ-1234",
    "PROJ-12345",
    "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA0Z3VS5JJ\n-----END RSA PRIVATE KEY-----",
    "-----BEGIN PRIVATE KEY-----\nMIIEvQ\n",
    // Number and address fragments that join differently depending on
    // their neighbours.
    "123 ",
    "138",
    "-0013",
    "-8000",
    " 0013 8000",
    "4111 ",
    "1111",
    "john..doe",
    "a1@b2.cn",
    "@example.com",
    "x@y",
    ".cn",
    "+86",
    "X",
    "PROJ-",
    "sk-",
    "ghp_",
    "-----",
    "BEGIN ",
    "\u{2060}",
    // Filler and glue.
    "你好，",
    "今天天气不错。",
    " the quick brown fox ",
    "，",
    " ",
    "\n",
    "123",
    "2024年",
    "3.14159",
    "abc",
    "！",
    "——",
    "…",
    "é",
    "e\u{301}",
    "Ｔｅｓｔ",
    "x",
    "1",
    "@",
    ".",
    "-",
    "+",
    "_",
    "*",
    "\u{200D}",
];

/// The pieces of [`PIECES`] that are a redacted or blocked term.
const TERMS: usize = 17;
const FLAGGED_TERMS: [&str; 2] = ["测试", "Hello World"];

fn answer_strategy() -> impl Strategy<Value = Vec<&'static str>> {
    prop::collection::vec(prop::sample::select(PIECES), 0..14)
}

const BLOCKED_TERMS: [&str; 3] = ["炸弹", "炸 弹", "secretproject"];

/// Byte ranges of the redacted (and, `with_blocks`, blocked) terms among
/// `pieces`.
fn term_ranges(pieces: &[&str], with_blocks: bool) -> Vec<(usize, usize)> {
    let mut ranges = Vec::new();
    let mut at = 0;
    for piece in pieces {
        let blocked = BLOCKED_TERMS.contains(piece);
        if PIECES[..TERMS].contains(piece)
            && !FLAGGED_TERMS.contains(piece)
            && (with_blocks || !blocked)
        {
            ranges.push((at, at + piece.len()));
        }
        at += piece.len();
    }
    ranges
}

/// Whether a term at `start..end` is redacted, or cut off by a block at or
/// before it.
fn covered(hits: &[Hit], start: usize, end: usize) -> bool {
    let blocked_before = hits
        .iter()
        .any(|h| h.action == Action::Block && h.start <= start);
    blocked_before
        || hits
            .iter()
            .any(|h| h.action != Action::Flag && h.start < end && start < h.end)
}

/// Splits `text` at the given fractions, on character boundaries.
fn chunk(text: &str, cuts: &[prop::sample::Index]) -> Vec<String> {
    let boundaries: Vec<usize> = text.char_indices().map(|(i, _)| i).skip(1).collect();
    let mut points: Vec<usize> = if boundaries.is_empty() {
        Vec::new()
    } else {
        cuts.iter()
            .map(|c| boundaries[c.index(boundaries.len())])
            .collect()
    };
    points.sort_unstable();
    points.dedup();
    let mut chunks = Vec::new();
    let mut at = 0;
    for point in points.into_iter().chain([text.len()]) {
        chunks.push(text[at..point].to_owned());
        at = point;
    }
    chunks
}

fn check_stream_equals_whole(policy: &Arc<Policy>, answer: &str, cuts: &[prop::sample::Index]) {
    let chunks = chunk(answer, cuts);
    let chunks: Vec<&str> = chunks.iter().map(String::as_str).collect();
    let got = run(policy, &chunks);
    let want = expected(policy, answer);
    assert_eq!(got.0, want.0, "released text, chunks {chunks:?}");
    assert_eq!(got.1, want.1, "hits, chunks {chunks:?}");
    assert_eq!(got.2, want.2, "blocked, chunks {chunks:?}");
    if want.1.is_empty() {
        assert_eq!(got.0, answer, "no hit: byte for byte");
    }
}

static REDACTING: LazyLock<Arc<Policy>> = LazyLock::new(|| compile(everything_redacted()));
static BLOCKING: LazyLock<Arc<Policy>> = LazyLock::new(|| compile(with_blocks()));

proptest! {
    // 256 cases by default; PROPTEST_CASES=N for a longer run.

    #[test]
    fn rechunked_answers_redact_like_a_whole_check(
        pieces in answer_strategy(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let policy = &*REDACTING;
        let answer = pieces.concat();
        check_stream_equals_whole(policy, &answer, &cuts);
        // Every term, however disguised, is redacted.
        let hits = policy.check(Direction::Output, &answer).hits;
        for (start, end) in term_ranges(&pieces, false) {
            prop_assert!(covered(&hits, start, end), "{:?} not redacted in {answer:?}", &answer[start..end]);
        }
    }

    #[test]
    fn rechunked_answers_block_like_a_whole_check(
        pieces in answer_strategy(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let policy = &*BLOCKING;
        let answer = pieces.concat();
        check_stream_equals_whole(policy, &answer, &cuts);
        let hits = policy.check(Direction::Output, &answer).hits;
        for (start, end) in term_ranges(&pieces, true) {
            prop_assert!(covered(&hits, start, end), "{:?} not caught in {answer:?}", &answer[start..end]);
        }
    }

    #[test]
    fn one_character_at_a_time_equals_a_whole_check(pieces in answer_strategy()) {
        let policy = &*BLOCKING;
        let answer = pieces.concat();
        let chunks: Vec<String> = answer.chars().map(String::from).collect();
        let chunks: Vec<&str> = chunks.iter().map(String::as_str).collect();
        let got = run(policy, &chunks);
        let want = expected(policy, &answer);
        prop_assert_eq!(got, want);
    }
}

#[test]
fn a_regex_that_never_dies_holds_at_most_max_hold() {
    let policy = compile(vec![common::regex(
        "span",
        Action::Redact,
        r"(?s)BEGIN.*END",
    )]);
    let mut scanner = policy.stream();
    let first = scanner.push("ok BEGIN ");
    assert_eq!(first.text, "ok ");
    let filler = "x".repeat(1000);
    let mut released = first.text.len();
    for _ in 0..200 {
        released += scanner.push(&filler).text.len();
        assert!(
            scanner.held_back() <= llmgw_policy::MAX_HOLD,
            "{}",
            scanner.held_back()
        );
    }
    assert!(released > 100_000);
}
