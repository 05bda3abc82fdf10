//! One compiled policy: its rules, grouped into matchers, and the scan that
//! both [`Policy::check`] and the stream scanner run.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use crate::PolicyError;
use crate::detectors::{self, Found, Kinds};
use crate::hit::{self, Findings, Hit, MatchHasher};
use crate::normalise::{Options, normalise};
use crate::regex_rule::RegexRule;
use crate::spec::{Action, Direction, PolicySpec, RuleKind, RuleSpec};
use crate::stream::StreamScanner;
use crate::words::{self, WordMatcher};

/// One compiled policy. Its `Debug` shows rules and sizes, never terms.
pub struct Policy {
    name: String,
    audit_excerpts: bool,
    rules: Vec<Rule>,
    /// Word-list rules grouped by (normalisation options, direction).
    words: Vec<(Direction, WordMatcher)>,
    /// Regex rules: (rule index, compiled).
    regexes: Vec<(usize, RegexRule)>,
    hasher: MatchHasher,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("name", &self.name)
            .field("audit_excerpts", &self.audit_excerpts)
            .field("rules", &self.rules)
            .field("word_matchers", &self.words.len())
            .field("memory_usage", &self.memory_usage())
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
pub(crate) struct Rule {
    pub id: Arc<str>,
    pub kind: RuleKind,
    pub direction: Direction,
    pub action: Action,
    pub mask: Arc<str>,
}

/// What a scan of a stream's window found.
#[derive(Debug)]
pub(crate) struct Window {
    pub hits: Vec<RawHit>,
    /// Where text that could still become (part of) a match begins.
    pub hold: Option<usize>,
    /// Stretches (number runs, e-mail candidates) a stream must not be cut
    /// inside: a scan restarting inside one would read it differently.
    pub spans: Vec<(usize, usize)>,
}

/// A match before it becomes a [`Hit`]: rule, offsets in the scanned text,
/// and what its hash covers.
#[derive(Debug)]
pub(crate) struct RawHit {
    pub rule: usize,
    pub start: usize,
    pub end: usize,
    pub normalised: String,
}

impl Policy {
    pub fn compile(
        name: &str,
        spec: &PolicySpec,
        word_lists: &BTreeMap<String, Vec<String>>,
        match_hash_key: &[u8],
    ) -> Result<Policy, PolicyError> {
        if name.is_empty() {
            return Err(PolicyError::Policy {
                policy: String::new(),
                reason: "a policy needs a name".to_owned(),
            });
        }
        let fail = |rule: &RuleSpec, reason: String| PolicyError::Rule {
            policy: name.to_owned(),
            rule: rule.id.clone(),
            reason,
        };
        let mut seen = HashSet::new();
        let mut rules = Vec::new();
        let mut groups: BTreeMap<GroupKey, Vec<(usize, Vec<&str>)>> = BTreeMap::new();
        let mut regexes = Vec::new();
        for (index, spec) in spec.rules.iter().enumerate() {
            if spec.id.is_empty() {
                return Err(fail(spec, "a rule needs an id".to_owned()));
            }
            if !seen.insert(spec.id.as_str()) {
                return Err(fail(spec, "duplicate rule id".to_owned()));
            }
            validate_fields(spec).map_err(|reason| fail(spec, reason))?;
            match spec.kind {
                RuleKind::Words => {
                    let mut terms: Vec<&str> = spec.terms.iter().map(String::as_str).collect();
                    for list in &spec.word_lists {
                        let words = word_lists.get(list).ok_or_else(|| {
                            fail(spec, format!("word list {list:?} is not defined"))
                        })?;
                        terms.extend(words.iter().map(String::as_str));
                    }
                    let key = (
                        spec.skip_separators,
                        spec.fold_chinese_variants,
                        direction_key(spec.direction),
                    );
                    groups.entry(key).or_default().push((index, terms));
                }
                RuleKind::Regex => {
                    let pattern = spec.pattern.as_deref().unwrap_or_default();
                    regexes.push((
                        index,
                        RegexRule::compile(pattern).map_err(|reason| fail(spec, reason))?,
                    ));
                }
                _ => {}
            }
            let mask = spec.mask.clone().unwrap_or_else(|| match spec.kind {
                RuleKind::Words => "***".to_owned(),
                kind => format!("[REDACTED:{}]", kind.as_str()),
            });
            rules.push(Rule {
                id: spec.id.as_str().into(),
                kind: spec.kind,
                direction: spec.direction,
                action: spec.action,
                mask: mask.into(),
            });
        }
        let mut words = Vec::new();
        for ((skip_separators, fold_variants, _), group) in groups {
            let direction = rules[group[0].0].direction;
            if fold_variants {
                crate::charclass::warm_variant_table();
            }
            let options = Options {
                skip_separators,
                fold_variants,
            };
            let matcher = WordMatcher::build(options, &group).map_err(|e| match e {
                words::BuildError::NoTerms(index) => fail(
                    &spec.rules[index],
                    "the rule has no terms (give terms or word_lists with entries)".to_owned(),
                ),
                words::BuildError::Automaton(reason) => PolicyError::Policy {
                    policy: name.to_owned(),
                    reason,
                },
            })?;
            words.push((direction, matcher));
        }
        Ok(Policy {
            name: name.to_owned(),
            audit_excerpts: spec.audit_excerpts,
            rules,
            words,
            regexes,
            hasher: MatchHasher::new(match_hash_key),
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
        let raw = self.scan(way, text, 0, false).hits;
        let mut hits: Vec<Hit> = raw.into_iter().map(|raw| self.hit(raw, 0)).collect();
        hit::sort(&mut hits);
        self.add_excerpts(text, 0, &mut hits);
        Findings { hits }
    }

    /// A scanner for one answer stream (direction `Output`).
    pub fn stream(self: &Arc<Self>) -> StreamScanner {
        StreamScanner::new(Arc::clone(self))
    }

    /// Estimated heap bytes of the compiled matchers.
    pub fn memory_usage(&self) -> usize {
        self.words
            .iter()
            .map(|(_, m)| m.memory_usage())
            .sum::<usize>()
            + self
                .regexes
                .iter()
                .map(|(_, r)| r.memory_usage())
                .sum::<usize>()
            + self.rules.len() * std::mem::size_of::<Rule>()
    }

    /// The scan behind `check` and the stream: matches starting in
    /// `hay[from..]` (`hay[..from]` is context), and with `stream` the
    /// offset from which text could still become part of a match and the
    /// stretches not to cut inside.
    pub(crate) fn scan(&self, way: Direction, hay: &str, from: usize, stream: bool) -> Window {
        let mut raw = Vec::new();
        let mut spans = Vec::new();
        let mut hold: Option<usize> = None;
        let mut merge = |h: Option<usize>| {
            if let Some(h) = h {
                hold = Some(hold.map_or(h, |old| old.min(h)));
            }
        };
        let text = &hay[from..];
        let prev = hay[..from].chars().next_back();
        for (direction, matcher) in &self.words {
            if !direction.covers(way) {
                continue;
            }
            let normalised = normalise(text, prev, matcher.options);
            let mut found = Vec::new();
            merge(
                matcher
                    .scan(&normalised, stream, &mut found)
                    .map(|h| from + h),
            );
            raw.extend(found.into_iter().map(|w| RawHit {
                rule: w.rule,
                start: from + w.start,
                end: from + w.end,
                normalised: w.normalised,
            }));
        }
        let mut kinds = Kinds::default();
        for rule in self.rules.iter().filter(|r| r.direction.covers(way)) {
            kinds.add(rule.kind);
        }
        if kinds.any() {
            let mut found: Vec<Found> = Vec::new();
            merge(detectors::scan(
                hay, from, stream, kinds, &mut found, &mut spans,
            ));
            for f in found {
                let value = detectors::canonical(f.kind, &hay[f.start..f.end]);
                for (index, rule) in self.rules.iter().enumerate() {
                    if rule.kind == f.kind && rule.direction.covers(way) {
                        raw.push(RawHit {
                            rule: index,
                            start: f.start,
                            end: f.end,
                            normalised: value.clone(),
                        });
                    }
                }
            }
        }
        for (index, regex) in &self.regexes {
            if !self.rules[*index].direction.covers(way) {
                continue;
            }
            let mut found = Vec::new();
            merge(regex.scan(hay, from, stream, &mut found));
            for (start, end) in found {
                let value = normalise(&hay[start..end], None, Options::default())
                    .text()
                    .to_owned();
                raw.push(RawHit {
                    rule: *index,
                    start,
                    end,
                    normalised: value,
                });
            }
        }
        Window {
            hits: raw,
            hold,
            spans,
        }
    }

    /// The public hit for `raw`, offsets shifted by `shift`.
    pub(crate) fn hit(&self, raw: RawHit, shift: usize) -> Hit {
        let rule = &self.rules[raw.rule];
        Hit {
            rule_id: Arc::clone(&rule.id),
            kind: rule.kind,
            action: rule.action,
            mask: Arc::clone(&rule.mask),
            start: raw.start + shift,
            end: raw.end + shift,
            match_hash: self.hasher.hash(&raw.normalised),
            excerpt: None,
        }
    }

    /// Fills in excerpts (if the policy keeps them) for hits of `text`,
    /// which starts at offset `base` of the hits' offsets.
    pub(crate) fn add_excerpts(&self, text: &str, base: usize, hits: &mut [Hit]) {
        if !self.audit_excerpts {
            return;
        }
        for index in 0..hits.len() {
            let excerpt = hit::excerpt(text, base, hits, index);
            hits[index].excerpt = Some(excerpt);
        }
    }
}

/// Word-list rules share a matcher when they normalise alike and apply in
/// the same direction: (skip_separators, fold_chinese_variants, direction).
type GroupKey = (bool, bool, u8);

fn direction_key(direction: Direction) -> u8 {
    match direction {
        Direction::Input => 0,
        Direction::Output => 1,
        Direction::Both => 2,
    }
}

/// Fields that only make sense for some kinds.
fn validate_fields(spec: &RuleSpec) -> Result<(), String> {
    let kind = spec.kind.as_str();
    if spec.kind == RuleKind::Words {
        if spec.terms.is_empty() && spec.word_lists.is_empty() {
            return Err("a words rule needs terms or word_lists".to_owned());
        }
    } else {
        if !spec.terms.is_empty() || !spec.word_lists.is_empty() {
            return Err(format!(
                "terms and word_lists apply to words rules, not {kind}"
            ));
        }
        if spec.skip_separators || spec.fold_chinese_variants {
            return Err(format!(
                "skip_separators and fold_chinese_variants apply to words rules, not {kind}"
            ));
        }
    }
    match (spec.kind, &spec.pattern) {
        (RuleKind::Regex, None) => Err("a regex rule needs a pattern".to_owned()),
        (RuleKind::Regex, Some(_)) | (_, None) => Ok(()),
        (_, Some(_)) => Err(format!("pattern applies to regex rules, not {kind}")),
    }
}
