//! Content policy: what may not leave in a prompt or reach a user in an
//! answer. A [`PolicySet`] is compiled from a [`PolicySource`] (the config
//! file's `policy:` section, or what billing serves) off the request path;
//! the edge checks prompts with [`Policy::check`], the router checks answers
//! with a [`StreamScanner`] per choice.
//!
//! - Word lists: terms matched as substrings after normalisation (per
//!   character cluster: NFKC, lower case, invisible characters removed;
//!   per rule, optionally: separators between CJK characters skipped,
//!   traditional Chinese folded to simplified), by an Aho-Corasick
//!   automaton, leftmost-longest per rule. Matches map back to the original
//!   characters, so redaction replaces exactly what matched.
//! - Detectors (e-mail, phone, resident ID, bank card, IPv4, secrets), each
//!   validated (checksums, Luhn, boundaries) to keep false positives down;
//!   they read the original text.
//! - Custom regexes: the `regex` crate (no backtracking), size-limited.
//!
//! Overlapping hits: see [`Findings`]; a `block` wins, overlapping
//! redactions merge. Streams: see [`StreamScanner`]; they hold back only
//! what could still become a match and end up equal to a check of the
//! whole answer. Matched text is never logged or kept: hits carry offsets
//! and a keyed hash (plus a masked excerpt if the policy opts in), and no
//! `Debug` output shows terms or answer text.

mod charclass;
mod detectors;
pub mod feed;
mod hit;
mod normalise;
mod policy;
mod regex_rule;
mod spec;
mod startfilter;
mod stream;
mod words;

use std::collections::HashMap;
use std::sync::Arc;

pub use hit::{Findings, Hit};
pub use policy::Policy;
pub use spec::{Action, Direction, PolicySource, PolicySpec, RuleKind, RuleSpec};
pub use stream::{MAX_HOLD, Scanned, StreamScanner};

/// Why a policy set does not compile. Names the policy and rule, so an
/// admin API caller or a config file author can fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("policy {policy:?}, rule {rule:?}: {reason}")]
    Rule {
        policy: String,
        rule: String,
        reason: String,
    },
    #[error("policy {policy:?}: {reason}")]
    Policy { policy: String, reason: String },
    #[error("the default policy {0:?} is not defined")]
    UnknownDefault(String),
    #[error("tenant {tenant:?} is assigned policy {policy:?}, which is not defined")]
    UnknownTenantPolicy { tenant: String, policy: String },
}

/// Every policy, compiled, and which one applies to whom.
#[derive(Debug, Default)]
pub struct PolicySet {
    default: Option<Arc<Policy>>,
    policies: HashMap<String, Arc<Policy>>,
    tenants: HashMap<String, Arc<Policy>>,
}

impl PolicySet {
    /// No policy at all: nothing is checked.
    pub fn empty() -> PolicySet {
        PolicySet::default()
    }

    /// Compiles and validates every policy of `source` (rule fields, word
    /// lists, regexes, the default and tenant assignments); the error names
    /// the policy and rule. `match_hash_key` keys the hashes of matched text
    /// in audit events. Slow for large word lists (a 50,000-term list takes
    /// on the order of 100 ms): call it off the request path
    /// (`spawn_blocking`).
    pub fn compile(source: &PolicySource, match_hash_key: &[u8]) -> Result<PolicySet, PolicyError> {
        let mut policies = HashMap::new();
        for (name, spec) in &source.policies {
            let policy = Policy::compile(name, spec, &source.word_lists, match_hash_key)?;
            policies.insert(name.clone(), Arc::new(policy));
        }
        let default = if source.default.is_empty() {
            None
        } else {
            Some(
                policies
                    .get(&source.default)
                    .cloned()
                    .ok_or_else(|| PolicyError::UnknownDefault(source.default.clone()))?,
            )
        };
        let mut tenants = HashMap::new();
        for (tenant, name) in &source.tenants {
            let policy =
                policies
                    .get(name)
                    .cloned()
                    .ok_or_else(|| PolicyError::UnknownTenantPolicy {
                        tenant: tenant.clone(),
                        policy: name.clone(),
                    })?;
            tenants.insert(tenant.clone(), policy);
        }
        Ok(PolicySet {
            default,
            policies,
            tenants,
        })
    }

    /// The policy that applies to `tenant`: its own, else the default.
    pub fn for_tenant(&self, tenant: &str) -> Option<&Arc<Policy>> {
        self.tenants.get(tenant).or(self.default.as_ref())
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Policy>> {
        self.policies.get(name)
    }

    /// Estimated heap bytes of every compiled policy (for metrics).
    pub fn memory_usage(&self) -> usize {
        self.policies.values().map(|p| p.memory_usage()).sum()
    }
}
