//! What a policy says, as written in the config file, sent to the admin API
//! and carried on the wire (`PolicyDocument.spec_json`): one schema for all
//! three.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The `policy:` section of the config file, and the set billing serves.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySource {
    /// The policy for tenants with none assigned; empty = no policy.
    #[serde(default)]
    pub default: String,
    #[serde(default)]
    pub policies: BTreeMap<String, PolicySpec>,
    /// Named word lists rules refer to (`word_lists: [name]`).
    #[serde(default)]
    pub word_lists: BTreeMap<String, Vec<String>>,
    /// Tenant name -> policy name (from the database; not in the file).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tenants: BTreeMap<String, String>,
}

/// One named policy: its rules, in order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySpec {
    /// Keep a short excerpt around each match (the match itself masked) in
    /// the audit trail. Off: only ids, offsets and a keyed hash.
    #[serde(default)]
    pub audit_excerpts: bool,
    pub rules: Vec<RuleSpec>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// Named in errors and audit events (never the matched text).
    pub id: String,
    pub kind: RuleKind,
    #[serde(default)]
    pub direction: Direction,
    pub action: Action,
    /// What a `redact` puts in place of the match; default
    /// `[REDACTED:<kind>]` (`***` for word lists).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask: Option<String>,
    /// `words`: terms given inline.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub terms: Vec<String>,
    /// `words`: names of word lists (config file or admin API).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub word_lists: Vec<String>,
    /// `regex`: the pattern (Rust `regex` syntax: no backtracking).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// `words`: ignore separators (spaces, `*`, punctuation) between CJK
    /// characters, so `敏 感 词` matches `敏感词`.
    #[serde(default)]
    pub skip_separators: bool,
    /// `words`: traditional and simplified Chinese match each other.
    #[serde(default)]
    pub fold_chinese_variants: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    /// Exact terms from word lists, after normalisation.
    Words,
    Email,
    /// Mainland-China mobile numbers and E.164 numbers.
    Phone,
    /// Mainland-China resident ID numbers (checksum verified).
    ResidentId,
    /// Payment card numbers (Luhn verified).
    BankCard,
    Ipv4,
    /// API keys with well-known prefixes, PEM private keys, llmgw keys.
    Secret,
    Regex,
}

impl RuleKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RuleKind::Words => "words",
            RuleKind::Email => "email",
            RuleKind::Phone => "phone",
            RuleKind::ResidentId => "resident_id",
            RuleKind::BankCard => "bank_card",
            RuleKind::Ipv4 => "ipv4",
            RuleKind::Secret => "secret",
            RuleKind::Regex => "regex",
        }
    }
}

/// Which text a rule applies to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Prompts (checked at the edge).
    Input,
    /// Answers (checked by the router, streams included).
    Output,
    #[default]
    Both,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Input => "input",
            Direction::Output => "output",
            Direction::Both => "both",
        }
    }

    /// Whether a rule with this direction applies to text going `way`
    /// (`Input` or `Output`).
    pub fn covers(self, way: Direction) -> bool {
        self == Direction::Both || self == way
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Refuse the prompt (400) or cut the answer (`content_filter`).
    Block,
    /// Replace the match with the rule's mask.
    Redact,
    /// Let it through; audit only.
    Flag,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Block => "block",
            Action::Redact => "redact",
            Action::Flag => "flag",
        }
    }
}
