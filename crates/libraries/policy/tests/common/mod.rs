//! Policies shared by the integration tests.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;

use llmgw_policy::{Action, Direction, Policy, PolicySource, PolicySpec, RuleKind, RuleSpec};

pub const KEY: &[u8] = b"test match-hash key";

pub fn rule(id: &str, kind: RuleKind, action: Action) -> RuleSpec {
    RuleSpec {
        id: id.to_owned(),
        kind,
        direction: Direction::Both,
        action,
        mask: None,
        terms: Vec::new(),
        word_lists: Vec::new(),
        pattern: None,
        skip_separators: false,
        fold_chinese_variants: false,
    }
}

pub fn words(id: &str, action: Action, terms: &[&str]) -> RuleSpec {
    RuleSpec {
        terms: terms.iter().map(|t| (*t).to_owned()).collect(),
        ..rule(id, RuleKind::Words, action)
    }
}

pub fn regex(id: &str, action: Action, pattern: &str) -> RuleSpec {
    RuleSpec {
        pattern: Some(pattern.to_owned()),
        ..rule(id, RuleKind::Regex, action)
    }
}

pub fn compile(rules: Vec<RuleSpec>) -> Arc<Policy> {
    compile_with(rules, false)
}

pub fn compile_with(rules: Vec<RuleSpec>, audit_excerpts: bool) -> Arc<Policy> {
    let spec = PolicySpec {
        audit_excerpts,
        rules,
    };
    match Policy::compile("test", &spec, &BTreeMap::new(), KEY) {
        Ok(policy) => Arc::new(policy),
        Err(e) => panic!("{e}"),
    }
}

/// Every kind of rule, none blocking.
pub fn everything_redacted() -> Vec<RuleSpec> {
    vec![
        RuleSpec {
            skip_separators: true,
            fold_chinese_variants: true,
            ..words(
                "cn-words",
                Action::Redact,
                &["敏感词", "机密文件", "badword", "café"],
            )
        },
        words("flag-words", Action::Flag, &["测试", "hello world", "敏感"]),
        rule("email", RuleKind::Email, Action::Redact),
        rule("phone", RuleKind::Phone, Action::Redact),
        rule("id", RuleKind::ResidentId, Action::Redact),
        rule("card", RuleKind::BankCard, Action::Redact),
        rule("ip", RuleKind::Ipv4, Action::Flag),
        rule("secret", RuleKind::Secret, Action::Redact),
        regex("ticket", Action::Redact, r"\bPROJ-\d{4}\b"),
    ]
}

/// The same, with a blocking word list and blocking secrets.
pub fn with_blocks() -> Vec<RuleSpec> {
    let mut rules = everything_redacted();
    rules.push(RuleSpec {
        skip_separators: true,
        ..words("bomb", Action::Block, &["炸弹", "secretproject"])
    });
    for rule in &mut rules {
        if rule.id == "secret" {
            rule.action = Action::Block;
        }
    }
    rules
}

/// Source of a set with one policy of `rules`, as the default.
pub fn source(rules: Vec<RuleSpec>) -> PolicySource {
    PolicySource {
        default: "p".to_owned(),
        policies: BTreeMap::from([(
            "p".to_owned(),
            PolicySpec {
                audit_excerpts: false,
                rules,
            },
        )]),
        word_lists: BTreeMap::new(),
        tenants: BTreeMap::new(),
    }
}
