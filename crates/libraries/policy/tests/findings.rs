//! What a check reports: detectors through a policy (and the false
//! positives the issue names), directions, overlapping hits, match hashes
//! and excerpts.

mod common;

use std::collections::BTreeMap;

use common::{KEY, compile, compile_with, regex, rule, words};
use llmgw_policy::{Action, Direction, Policy, PolicySpec, RuleKind, RuleSpec};

fn kinds(policy: &Policy, text: &str) -> Vec<(RuleKind, String)> {
    policy
        .check(Direction::Input, text)
        .hits
        .into_iter()
        .map(|h| (h.kind, text[h.start..h.end].to_owned()))
        .collect()
}

fn all_detectors(action: Action) -> Vec<RuleSpec> {
    [
        RuleKind::Email,
        RuleKind::Phone,
        RuleKind::ResidentId,
        RuleKind::BankCard,
        RuleKind::Ipv4,
        RuleKind::Secret,
    ]
    .into_iter()
    .map(|kind| rule(kind.as_str(), kind, action))
    .collect()
}

#[test]
fn detectors_find_what_leaks() {
    let policy = compile(all_detectors(Action::Redact));
    let text = "联系张三 zhang.san@example.com 或 13800138000，身份证 11010519491231002X，\
                卡号 6222 0212 3456 7890 128，服务器 10.1.2.3，密钥 sk-llmgw-AbCdEfGhIjKlMnOpQrStUv123456。";
    assert_eq!(
        kinds(&policy, text),
        vec![
            (RuleKind::Email, "zhang.san@example.com".to_owned()),
            (RuleKind::Phone, "13800138000".to_owned()),
            (RuleKind::ResidentId, "11010519491231002X".to_owned()),
            (RuleKind::BankCard, "6222 0212 3456 7890 128".to_owned()),
            (RuleKind::Ipv4, "10.1.2.3".to_owned()),
            (
                RuleKind::Secret,
                "sk-llmgw-AbCdEfGhIjKlMnOpQrStUv123456".to_owned()
            ),
        ]
    );
    assert_eq!(
        policy.check(Direction::Input, text).redact(text),
        "联系张三 [REDACTED:email] 或 [REDACTED:phone]，身份证 [REDACTED:resident_id]，\
         卡号 [REDACTED:bank_card]，服务器 [REDACTED:ipv4]，密钥 [REDACTED:secret]。"
    );
}

#[test]
fn false_positives_named_in_the_issue_are_not_flagged() {
    let policy = compile(all_detectors(Action::Flag));
    // An 18-digit number with a wrong check digit; a 16-digit non-Luhn
    // number; numbers inside longer runs; dotted version numbers.
    for text in [
        "订单号 110105194912310021",
        "ref 4111111111111112",
        "id 12345678901234567890",
        "pi 3.14159265358979323846",
        "version 1.2.3.4.5",
        "build 20240101123456",
    ] {
        assert_eq!(kinds(&policy, text), vec![], "{text}");
    }
}

#[test]
fn rules_apply_in_their_direction_only() {
    let input_only = RuleSpec {
        direction: Direction::Input,
        ..rule("e", RuleKind::Email, Action::Block)
    };
    let output_only = RuleSpec {
        direction: Direction::Output,
        ..words("w", Action::Redact, &["secret"])
    };
    let policy = compile(vec![input_only, output_only]);
    let text = "secret a@b.com";
    let input: Vec<_> = policy
        .check(Direction::Input, text)
        .hits
        .into_iter()
        .map(|h| h.rule_id)
        .collect();
    let output: Vec<_> = policy
        .check(Direction::Output, text)
        .hits
        .into_iter()
        .map(|h| h.rule_id)
        .collect();
    assert_eq!(input, vec!["e".into()]);
    assert_eq!(output, vec!["w".into()]);
    assert!(policy.checks(Direction::Input) && policy.checks(Direction::Output));
    let only_input = compile(vec![RuleSpec {
        direction: Direction::Input,
        ..rule("e", RuleKind::Email, Action::Flag)
    }]);
    assert!(!only_input.checks(Direction::Output));
}

#[test]
fn block_wins_and_overlapping_redactions_merge() {
    let policy = compile(vec![
        words("names", Action::Redact, &["john.doe"]),
        rule("email", RuleKind::Email, Action::Redact),
        words("flagged", Action::Flag, &["example"]),
    ]);
    let text = "mail john.doe@example.com now";
    let findings = policy.check(Direction::Input, text);
    assert_eq!(findings.hits.len(), 3);
    assert!(findings.blocking().is_none());
    // The e-mail (earliest start, longest) gives its mask to the union.
    assert_eq!(findings.redact(text), "mail [REDACTED:email] now");

    let blocking = compile(vec![
        rule("email", RuleKind::Email, Action::Redact),
        words("b", Action::Block, &["example"]),
    ]);
    let findings = blocking.check(Direction::Input, text);
    assert_eq!(findings.blocking().map(|h| &*h.rule_id), Some("b"));
}

#[test]
fn a_term_in_one_list_does_not_hide_a_term_in_another() {
    let policy = compile(vec![
        words("flag", Action::Flag, &["敏感词"]),
        words("block", Action::Block, &["感词"]),
    ]);
    let findings = policy.check(Direction::Input, "这是敏感词");
    assert_eq!(findings.blocking().map(|h| &*h.rule_id), Some("block"));
}

#[test]
fn match_hashes_correlate_normalised_values_and_depend_on_the_key() {
    let policy = compile(vec![
        words("w", Action::Flag, &["abc"]),
        rule("p", RuleKind::Phone, Action::Flag),
    ]);
    let hash = |text: &str| {
        policy.check(Direction::Input, text).hits[0]
            .match_hash
            .clone()
    };
    assert_eq!(hash("ＡＢＣ"), hash("abc"));
    assert_eq!(hash("ABC"), hash("abc"));
    assert_eq!(hash("138 0013 8000"), hash("13800138000"));
    assert_ne!(hash("13800138000"), hash("13900139000"));
    let h = hash("abc");
    assert_eq!(h.len(), 32);
    assert!(h.chars().all(|c| c.is_ascii_hexdigit()));
    let spec = PolicySpec {
        audit_excerpts: false,
        rules: vec![words("w", Action::Flag, &["abc"])],
    };
    let other_key = Policy::compile("p", &spec, &BTreeMap::new(), b"another key")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(
        other_key.check(Direction::Input, "abc").hits[0].match_hash,
        h
    );
    assert_ne!(
        h,
        KEY.iter().map(|b| format!("{b:02x}")).collect::<String>()
    );
}

#[test]
fn excerpts_only_when_asked_and_always_masked() {
    let rules = || {
        vec![
            rule("email", RuleKind::Email, Action::Flag),
            rule("phone", RuleKind::Phone, Action::Redact),
        ]
    };
    let text = "请联系我的邮箱 someone@example.com 或者电话 13800138000 谢谢你的帮助和耐心";
    let without = compile(rules()).check(Direction::Input, text);
    assert!(without.hits.iter().all(|h| h.excerpt.is_none()));
    let with = compile_with(rules(), true).check(Direction::Input, text);
    let excerpts: Vec<&str> = with
        .hits
        .iter()
        .filter_map(|h| h.excerpt.as_deref())
        .collect();
    assert_eq!(
        excerpts,
        vec![
            "请联系我的邮箱 [REDACTED:email] 或者电话 [REDACTED:phone]",
            "[REDACTED:email] 或者电话 [REDACTED:phone] 谢谢你的帮助和耐心",
        ]
    );
    for excerpt in excerpts {
        assert!(
            !excerpt.contains("someone") && !excerpt.contains("13800138000"),
            "{excerpt}"
        );
        assert!(
            excerpt.chars().count()
                <= 16 * 2 + "[REDACTED:email]".len() + "[REDACTED:phone]".len() + 4
        );
    }
}

#[test]
fn custom_regexes_respect_word_boundaries() {
    let policy = compile(vec![regex("ticket", Action::Redact, r"\bPROJ-\d{4}\b")]);
    let text = "see PROJ-1234, not XPROJ-1234 or PROJ-12345";
    assert_eq!(
        policy.check(Direction::Input, text).redact(text),
        "see [REDACTED:regex], not XPROJ-1234 or PROJ-12345"
    );
}
