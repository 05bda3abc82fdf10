//! `PolicySet::compile` refuses what cannot work, naming policy and rule
//! (billing validates admin API input with it), and picks the right policy
//! per tenant.

mod common;

use std::collections::BTreeMap;

use common::{KEY, regex, rule, source, words};
use llmgw_policy::{Action, PolicyError, PolicySet, PolicySource, PolicySpec, RuleKind, RuleSpec};

fn error(rules: Vec<RuleSpec>) -> PolicyError {
    match PolicySet::compile(&source(rules), KEY) {
        Ok(_) => panic!("compiled"),
        Err(e) => e,
    }
}

fn rule_error(rules: Vec<RuleSpec>, rule_id: &str, reason_contains: &str) {
    match error(rules) {
        PolicyError::Rule {
            policy,
            rule,
            reason,
        } => {
            assert_eq!(policy, "p");
            assert_eq!(rule, rule_id);
            assert!(reason.contains(reason_contains), "{reason}");
        }
        other => panic!("{other}"),
    }
}

#[test]
fn duplicate_rule_ids() {
    let rules = vec![
        rule("same", RuleKind::Email, Action::Flag),
        rule("same", RuleKind::Phone, Action::Flag),
    ];
    rule_error(rules, "same", "duplicate");
}

#[test]
fn words_rules_need_terms() {
    rule_error(
        vec![words("w", Action::Block, &[])],
        "w",
        "terms or word_lists",
    );
    // Terms that normalise to nothing do not count.
    rule_error(
        vec![words("w", Action::Block, &["", "\u{200B}"])],
        "w",
        "no terms",
    );
}

#[test]
fn unknown_word_list() {
    let rule = RuleSpec {
        word_lists: vec!["missing".to_owned()],
        ..words("w", Action::Block, &[])
    };
    rule_error(vec![rule], "w", "\"missing\"");
}

#[test]
fn regex_rules_need_a_valid_bounded_pattern() {
    rule_error(
        vec![rule("r", RuleKind::Regex, Action::Flag)],
        "r",
        "needs a pattern",
    );
    rule_error(
        vec![regex("r", Action::Flag, "(unclosed")],
        "r",
        "invalid pattern",
    );
    rule_error(vec![regex("r", Action::Flag, "x*")], "r", "empty string");
    rule_error(
        vec![regex("r", Action::Flag, r"\w{500}\w{500}\w{500}")],
        "r",
        "",
    );
}

#[test]
fn fields_of_other_kinds_are_refused() {
    let email_with_pattern = RuleSpec {
        pattern: Some("x".to_owned()),
        ..rule("e", RuleKind::Email, Action::Flag)
    };
    rule_error(
        vec![email_with_pattern],
        "e",
        "pattern applies to regex rules",
    );
    let phone_with_terms = RuleSpec {
        terms: vec!["x".to_owned()],
        ..rule("p", RuleKind::Phone, Action::Flag)
    };
    rule_error(vec![phone_with_terms], "p", "terms and word_lists");
    let regex_skipping = RuleSpec {
        skip_separators: true,
        ..regex("r", Action::Flag, "abc")
    };
    rule_error(vec![regex_skipping], "r", "skip_separators");
}

#[test]
fn unknown_default_and_tenant_policies() {
    let mut src = source(vec![rule("e", RuleKind::Email, Action::Flag)]);
    src.default = "nope".to_owned();
    assert_eq!(
        PolicySet::compile(&src, KEY).err(),
        Some(PolicyError::UnknownDefault("nope".to_owned()))
    );
    let mut src = source(vec![rule("e", RuleKind::Email, Action::Flag)]);
    src.tenants.insert("acme".to_owned(), "ghost".to_owned());
    assert_eq!(
        PolicySet::compile(&src, KEY).err(),
        Some(PolicyError::UnknownTenantPolicy {
            tenant: "acme".to_owned(),
            policy: "ghost".to_owned()
        })
    );
}

#[test]
fn errors_read_well() {
    let message = error(vec![words("w", Action::Block, &[])]).to_string();
    assert_eq!(
        message,
        "policy \"p\", rule \"w\": a words rule needs terms or word_lists"
    );
}

#[test]
fn tenants_get_their_policy_or_the_default() {
    let strict = PolicySpec {
        audit_excerpts: false,
        rules: vec![rule("e", RuleKind::Email, Action::Block)],
    };
    let lax = PolicySpec {
        audit_excerpts: false,
        rules: vec![rule("e", RuleKind::Email, Action::Flag)],
    };
    let source = PolicySource {
        default: "lax".to_owned(),
        policies: BTreeMap::from([("strict".to_owned(), strict), ("lax".to_owned(), lax)]),
        word_lists: BTreeMap::new(),
        tenants: BTreeMap::from([("acme".to_owned(), "strict".to_owned())]),
    };
    let set = match PolicySet::compile(&source, KEY) {
        Ok(set) => set,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(set.for_tenant("acme").map(|p| p.name()), Some("strict"));
    assert_eq!(set.for_tenant("other").map(|p| p.name()), Some("lax"));
    assert!(set.get("strict").is_some() && set.get("ghost").is_none());
    assert!(PolicySet::empty().for_tenant("acme").is_none());
}

#[test]
fn a_spec_round_trips_through_json() {
    let src = source(vec![
        RuleSpec {
            skip_separators: true,
            ..words("w", Action::Redact, &["敏感词"])
        },
        regex("r", Action::Flag, r"\bPROJ-\d{4}\b"),
    ]);
    let json = serde_json::to_string(&src.policies["p"]).unwrap_or_default();
    let back: PolicySpec = serde_json::from_str(&json).unwrap_or_default();
    assert_eq!(back, src.policies["p"]);
}

#[test]
fn compiled_policies_cross_threads_and_do_not_print_terms() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<PolicySet>();
    send_sync::<llmgw_policy::Policy>();
    send::<llmgw_policy::StreamScanner>();
    let set = match PolicySet::compile(
        &source(vec![words("w", Action::Block, &["topsecretterm"])]),
        KEY,
    ) {
        Ok(set) => set,
        Err(e) => panic!("{e}"),
    };
    let shown = format!("{set:?}");
    assert!(
        shown.contains("\"w\"") && !shown.contains("topsecretterm"),
        "{shown}"
    );
}
