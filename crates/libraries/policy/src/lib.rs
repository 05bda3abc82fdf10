//! Content policy: what may not leave in a prompt or reach a user in an
//! answer. A [`PolicySet`] is compiled from a [`PolicySource`] (the config
//! file's `policy:` section, or what billing serves) off the request path;
//! the edge checks prompts with [`Policy::check`], the router checks answers
//! with a [`StreamScanner`] per choice.
//!
//! SKELETON: the public API is fixed; the matching below is a naive
//! placeholder (case-insensitive substring search for word lists, no
//! detectors, a fixed hold-back) to be replaced by the real engine.

pub mod feed;
mod spec;

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use sha2::{Digest, Sha256};

pub use spec::{Action, Direction, PolicySource, PolicySpec, RuleKind, RuleSpec};

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

    /// Compiles every policy of `source`. `match_hash_key` keys the hashes of
    /// matched text in audit events. Slow for large word lists (tens of ms):
    /// call it off the request path (`spawn_blocking`).
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
}

/// One compiled policy.
#[derive(Debug)]
pub struct Policy {
    name: String,
    audit_excerpts: bool,
    rules: Vec<Rule>,
    hash_key: Vec<u8>,
}

#[derive(Debug)]
struct Rule {
    id: Arc<str>,
    kind: RuleKind,
    direction: Direction,
    action: Action,
    mask: Arc<str>,
    terms: Vec<String>,
}

impl Policy {
    pub fn compile(
        name: &str,
        spec: &PolicySpec,
        word_lists: &BTreeMap<String, Vec<String>>,
        match_hash_key: &[u8],
    ) -> Result<Policy, PolicyError> {
        let mut rules = Vec::new();
        for rule in &spec.rules {
            let mut terms: Vec<String> = rule.terms.iter().map(|t| t.to_lowercase()).collect();
            for list in &rule.word_lists {
                let words = word_lists.get(list).ok_or_else(|| PolicyError::Rule {
                    policy: name.to_owned(),
                    rule: rule.id.clone(),
                    reason: format!("word list {list:?} is not defined"),
                })?;
                terms.extend(words.iter().map(|t| t.to_lowercase()));
            }
            terms.retain(|t| !t.is_empty());
            let mask = rule.mask.clone().unwrap_or_else(|| match rule.kind {
                RuleKind::Words => "***".to_owned(),
                kind => format!("[REDACTED:{}]", kind.as_str()),
            });
            rules.push(Rule {
                id: rule.id.as_str().into(),
                kind: rule.kind,
                direction: rule.direction,
                action: rule.action,
                mask: mask.into(),
                terms,
            });
        }
        Ok(Policy {
            name: name.to_owned(),
            audit_excerpts: spec.audit_excerpts,
            rules,
            hash_key: match_hash_key.to_vec(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether any rule applies to text going `way` (`Input` or `Output`):
    /// when not, the caller skips scanning altogether.
    pub fn checks(&self, way: Direction) -> bool {
        self.rules.iter().any(|rule| rule.direction.covers(way))
    }

    /// Every match in `text` going `way`, in text order.
    pub fn check(&self, way: Direction, text: &str) -> Findings {
        let lower = text.to_lowercase();
        let mut hits = Vec::new();
        for rule in self.rules.iter().filter(|r| r.direction.covers(way)) {
            for term in &rule.terms {
                for (start, matched) in lower.match_indices(term.as_str()) {
                    // Placeholder: assumes lowercasing kept byte offsets.
                    hits.push(self.hit(
                        rule,
                        start,
                        start + matched.len(),
                        &text[start..start + matched.len()],
                    ));
                }
            }
        }
        hits.sort_by_key(|hit| hit.start);
        Findings { hits }
    }

    /// A scanner for one answer stream (direction `Output`).
    pub fn stream(self: &Arc<Self>) -> StreamScanner {
        StreamScanner {
            policy: Arc::clone(self),
            pending: String::new(),
            released: 0,
            blocked: false,
        }
    }

    fn hit(&self, rule: &Rule, start: usize, end: usize, matched: &str) -> Hit {
        let mut hasher = Sha256::new();
        hasher.update(&self.hash_key);
        hasher.update(matched.to_lowercase().as_bytes());
        let digest = hasher.finalize();
        let match_hash = digest.iter().map(|b| format!("{b:02x}")).collect();
        Hit {
            rule_id: Arc::clone(&rule.id),
            kind: rule.kind,
            action: rule.action,
            mask: Arc::clone(&rule.mask),
            start,
            end,
            match_hash,
            excerpt: self.audit_excerpts.then(|| rule.mask.to_string()),
        }
    }
}

/// One match. Offsets are a byte range of the text checked (for a stream:
/// of the whole answer so far, as the upstream sent it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    pub rule_id: Arc<str>,
    pub kind: RuleKind,
    pub action: Action,
    /// What `redact` puts in place of the match.
    pub mask: Arc<str>,
    pub start: usize,
    pub end: usize,
    /// Keyed hash (hex) of the normalised match: correlates repeated leaks
    /// of one value without storing it.
    pub match_hash: String,
    /// Only when the policy sets `audit_excerpts`: the text around the
    /// match, the match itself masked.
    pub excerpt: Option<String>,
}

/// What [`Policy::check`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Findings {
    pub hits: Vec<Hit>,
}

impl Findings {
    pub fn is_empty(&self) -> bool {
        self.hits.is_empty()
    }

    /// The first hit whose action is `block`, if any.
    pub fn blocking(&self) -> Option<&Hit> {
        self.hits.iter().find(|hit| hit.action == Action::Block)
    }

    /// `text` with every `redact` hit replaced by its mask (borrowed when
    /// there is none).
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut redactions = self
            .hits
            .iter()
            .filter(|h| h.action == Action::Redact)
            .peekable();
        if redactions.peek().is_none() {
            return Cow::Borrowed(text);
        }
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for hit in redactions {
            if hit.start < at {
                continue; // overlaps one already masked
            }
            out.push_str(&text[at..hit.start]);
            out.push_str(&hit.mask);
            at = hit.end;
        }
        out.push_str(&text[at..]);
        Cow::Owned(out)
    }
}

/// Scans one answer as it streams: [`push`](Self::push) each piece of text
/// as it arrives and send what it returns. It holds back only text that
/// could still become part of a match.
#[derive(Debug)]
pub struct StreamScanner {
    policy: Arc<Policy>,
    /// Text received but not yet released.
    pending: String,
    /// Bytes of the answer released so far (offset of `pending`).
    released: usize,
    blocked: bool,
}

/// What a [`StreamScanner`] lets through.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scanned {
    /// The text to send now (redactions applied); may be empty.
    pub text: String,
    /// Hits found in this step, offsets relative to the whole answer.
    pub hits: Vec<Hit>,
    /// A `block` rule matched: `text` ends before the match, and the answer
    /// must end here (`finish_reason: content_filter`).
    pub blocked: bool,
}

impl StreamScanner {
    pub fn push(&mut self, text: &str) -> Scanned {
        if self.blocked {
            return Scanned::default();
        }
        self.pending.push_str(text);
        // Placeholder: a fixed hold-back of the longest term's length.
        let longest = self
            .policy
            .rules
            .iter()
            .flat_map(|r| r.terms.iter().map(|t| t.chars().count()))
            .max()
            .unwrap_or(1);
        let keep_chars = longest.saturating_sub(1);
        let cut = self
            .pending
            .char_indices()
            .rev()
            .nth(keep_chars.saturating_sub(1))
            .map(|(i, _)| {
                if keep_chars == 0 {
                    self.pending.len()
                } else {
                    i
                }
            })
            .unwrap_or(0);
        self.release(cut)
    }

    /// The answer ended: check and release what was held back.
    pub fn finish(&mut self) -> Scanned {
        if self.blocked {
            return Scanned::default();
        }
        let len = self.pending.len();
        self.release(len)
    }

    /// Bytes currently held back.
    pub fn held_back(&self) -> usize {
        self.pending.len()
    }

    fn release(&mut self, cut: usize) -> Scanned {
        let findings = self.policy.check(Direction::Output, &self.pending);
        // Matches that end after the cut may still grow: wait for them.
        let cut = findings
            .hits
            .iter()
            .filter(|h| h.end > cut)
            .map(|h| h.start)
            .min()
            .map_or(cut, |start| start.min(cut));
        let mut hits: Vec<Hit> = findings.hits.into_iter().filter(|h| h.end <= cut).collect();
        let out = if let Some(block) = hits.iter().find(|h| h.action == Action::Block) {
            self.blocked = true;
            let before = Findings {
                hits: hits
                    .iter()
                    .filter(|h| h.end <= block.start)
                    .cloned()
                    .collect(),
            };
            before.redact(&self.pending[..block.start]).into_owned()
        } else {
            let findings = Findings { hits: hits.clone() };
            findings.redact(&self.pending[..cut]).into_owned()
        };
        for hit in &mut hits {
            hit.start += self.released;
            hit.end += self.released;
        }
        self.pending.drain(..cut);
        self.released += cut;
        Scanned {
            text: out,
            hits,
            blocked: self.blocked,
        }
    }
}
