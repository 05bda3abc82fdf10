//! Disguised terms are still caught (full width, case, zero-width
//! characters, spaced-out CJK, traditional characters where asked), and
//! redaction replaces exactly the characters that formed the match.

mod common;

use common::{compile, words};
use llmgw_policy::{Action, Direction, RuleSpec};

fn redacted(rule: RuleSpec, text: &str) -> String {
    let policy = compile(vec![rule]);
    policy
        .check(Direction::Input, text)
        .redact(text)
        .into_owned()
}

fn plain(terms: &[&str]) -> RuleSpec {
    words("w", Action::Redact, terms)
}

fn spaced(terms: &[&str]) -> RuleSpec {
    RuleSpec {
        skip_separators: true,
        ..plain(terms)
    }
}

fn variants(terms: &[&str]) -> RuleSpec {
    RuleSpec {
        fold_chinese_variants: true,
        ..plain(terms)
    }
}

#[test]
fn full_width_letters_and_digits() {
    assert_eq!(redacted(plain(&["abc123"]), "x ＡＢＣ１２３ y"), "x *** y");
    assert_eq!(redacted(plain(&["ＡＢＣ"]), "say abc"), "say ***");
}

#[test]
fn mixed_case() {
    assert_eq!(
        redacted(plain(&["BadWord"]), "a bAdWoRd here"),
        "a *** here"
    );
    assert_eq!(redacted(plain(&["straße"]), "STRASSE"), "***");
}

#[test]
fn zero_width_and_invisible_characters() {
    for text in [
        "敏\u{200B}感词",
        "敏\u{200C}感\u{200D}词",
        "敏\u{2060}感\u{FEFF}词",
        "敏感\u{00AD}词",
    ] {
        assert_eq!(
            redacted(plain(&["敏感词"]), &format!("[{text}]")),
            "[***]",
            "{text:?}"
        );
    }
    // The invisible characters around a match are not part of it.
    assert_eq!(
        redacted(plain(&["abc"]), "\u{200B}abc\u{200B}"),
        "\u{200B}***\u{200B}"
    );
}

#[test]
fn spaced_out_cjk_when_the_rule_skips_separators() {
    for text in [
        "敏 感 词",
        "敏*感*词",
        "敏_感-词",
        "敏.感.词",
        "敏，感。词",
        "敏\u{3000}感 \t词",
        "敏 * 感 ** 词",
    ] {
        assert_eq!(
            redacted(spaced(&["敏感词"]), &format!("说{text}了")),
            "说***了",
            "{text:?}"
        );
    }
    // Only between CJK characters, and only when asked.
    assert_eq!(redacted(plain(&["敏感词"]), "敏 感 词"), "敏 感 词");
    assert_eq!(redacted(spaced(&["ab"]), "a b"), "a b");
    // A term written with separators matches them skipped too.
    assert_eq!(redacted(spaced(&["敏 感 词"]), "敏感词"), "***");
}

#[test]
fn traditional_and_simplified_only_when_the_rule_asks() {
    assert_eq!(redacted(variants(&["敏感词"]), "敏感詞"), "***");
    assert_eq!(redacted(variants(&["機密文件"]), "机密文件"), "***");
    assert_eq!(redacted(plain(&["敏感词"]), "敏感詞"), "敏感詞");
    assert_eq!(redacted(plain(&["機密文件"]), "机密文件"), "机密文件");
}

#[test]
fn disguises_combine() {
    let rule = RuleSpec {
        skip_separators: true,
        fold_chinese_variants: true,
        ..plain(&["机密abc"])
    };
    assert_eq!(redacted(rule, "这是機 \u{200B}密ＡＢｃ吧"), "这是***吧");
}

#[test]
fn composed_and_decomposed_accents() {
    assert_eq!(redacted(plain(&["café"]), "le CAFE\u{301}!"), "le ***!");
    assert_eq!(redacted(plain(&["cafe\u{301}"]), "le café!"), "le ***!");
}

#[test]
fn redaction_replaces_exactly_the_matched_characters() {
    let policy = compile(vec![spaced(&["敏感词"])]);
    let text = "前文敏 \u{200B}感*词后文";
    let hit = &policy.check(Direction::Input, text).hits[0];
    assert_eq!(&text[hit.start..hit.end], "敏 \u{200B}感*词");
}
