//! Custom regexes: the `regex` crate (finite automata, no backtracking)
//! with size limits, over the original text.
//!
//! For streams, a second automaton answers "could a match still start
//! here?": a dense DFA of the same pattern with its look-around assertions
//! (`\b`, `^`, `$`) removed, which matches a superset of what the pattern
//! matches. Text from which its anchored walk is still alive at the end of
//! what arrived so far is held back; everything before it is final.

use regex::{Regex, RegexBuilder};
use regex_automata::dfa::{Automaton, dense};
use regex_automata::nfa::thompson;
use regex_automata::util::primitives::StateID;
use regex_automata::util::start;
use regex_automata::{Anchored, MatchKind};
use regex_syntax::hir::{Hir, HirKind, Repetition};

/// Compiled program limits: a pattern beyond them is refused at compile
/// time (admin API input), never slow at request time.
const REGEX_SIZE_LIMIT: usize = 1 << 20;
const REGEX_DFA_LIMIT: usize = 2 << 20;
const HOLD_DFA_LIMIT: usize = 4 << 20;
const NEST_LIMIT: u32 = 64;

#[derive(Debug)]
pub(crate) struct RegexRule {
    regex: Regex,
    /// Anchored, assertion-free DFA: is a match still possible from here?
    dfa: dense::DFA<Vec<u32>>,
    start: StateID,
    /// Bytes a match can start with.
    first: [u64; 4],
}

impl RegexRule {
    /// Compiles `pattern`; the error says why in words for the admin.
    pub fn compile(pattern: &str) -> Result<RegexRule, String> {
        let hir = regex_syntax::ParserBuilder::new()
            .nest_limit(NEST_LIMIT)
            .build()
            .parse(pattern)
            .map_err(|e| format!("invalid pattern: {e}"))?;
        match hir.properties().minimum_len() {
            Some(0) => return Err("the pattern matches the empty string".to_owned()),
            None => return Err("the pattern can never match".to_owned()),
            Some(_) => {}
        }
        let regex = RegexBuilder::new(pattern)
            .nest_limit(NEST_LIMIT)
            .size_limit(REGEX_SIZE_LIMIT)
            .dfa_size_limit(REGEX_DFA_LIMIT)
            .build()
            .map_err(|e| format!("invalid pattern: {e}"))?;
        let nfa = thompson::Compiler::new()
            .configure(
                thompson::Config::new()
                    .nfa_size_limit(Some(REGEX_SIZE_LIMIT))
                    .which_captures(thompson::WhichCaptures::None),
            )
            .build_from_hir(&without_assertions(&hir))
            .map_err(|e| format!("pattern too large: {e}"))?;
        let dfa = dense::Builder::new()
            .configure(
                dense::Config::new()
                    .start_kind(regex_automata::dfa::StartKind::Anchored)
                    .match_kind(MatchKind::All)
                    .dfa_size_limit(Some(HOLD_DFA_LIMIT))
                    .determinize_size_limit(Some(HOLD_DFA_LIMIT)),
            )
            .build_from_nfa(&nfa)
            .map_err(|e| format!("pattern too complex for streaming: {e}"))?;
        let start = dfa
            .start_state(&start::Config::new().anchored(Anchored::Yes))
            .map_err(|e| format!("pattern too complex for streaming: {e}"))?;
        let mut first = [0u64; 4];
        for byte in 0..=255u8 {
            if !dfa.is_dead_state(dfa.next_state(start, byte)) {
                first[usize::from(byte / 64)] |= 1 << (byte % 64);
            }
        }
        Ok(RegexRule {
            regex,
            dfa,
            start,
            first,
        })
    }

    /// Every match starting in `hay[from..]` (the text before `from` is
    /// context for `\b` and `^`). With `stream`, also returns where text
    /// that could still become (part of) a match begins.
    pub fn scan(
        &self,
        hay: &str,
        from: usize,
        stream: bool,
        out: &mut Vec<(usize, usize)>,
    ) -> Option<usize> {
        let mut at = from;
        while let Some(m) = self.regex.find_at(hay, at) {
            out.push((m.start(), m.end()));
            // Matches are never empty (refused at compile time).
            at = m.end();
        }
        if stream { self.hold(hay, from) } else { None }
    }

    fn hold(&self, hay: &str, from: usize) -> Option<usize> {
        let bytes = hay.as_bytes();
        (from..bytes.len()).find(|&at| {
            let lead = bytes[at];
            hay.is_char_boundary(at)
                && self.first[usize::from(lead / 64)] & (1 << (lead % 64)) != 0
                && self.alive_to_end(&bytes[at..])
        })
    }

    fn alive_to_end(&self, bytes: &[u8]) -> bool {
        let mut state = self.start;
        for &byte in bytes {
            state = self.dfa.next_state(state, byte);
            if self.dfa.is_dead_state(state) {
                return false;
            }
        }
        true
    }

    pub fn memory_usage(&self) -> usize {
        self.dfa.memory_usage() + 64
    }
}

/// `hir` with every look-around assertion replaced by the empty string: a
/// pattern for a superset of the original's matches.
fn without_assertions(hir: &Hir) -> Hir {
    match hir.kind() {
        HirKind::Look(_) => Hir::empty(),
        HirKind::Empty | HirKind::Literal(_) | HirKind::Class(_) => hir.clone(),
        HirKind::Repetition(rep) => Hir::repetition(Repetition {
            min: rep.min,
            max: rep.max,
            greedy: rep.greedy,
            sub: Box::new(without_assertions(&rep.sub)),
        }),
        HirKind::Capture(capture) => without_assertions(&capture.sub),
        HirKind::Concat(subs) => Hir::concat(subs.iter().map(without_assertions).collect()),
        HirKind::Alternation(subs) => {
            Hir::alternation(subs.iter().map(without_assertions).collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(pattern: &str) -> RegexRule {
        match RegexRule::compile(pattern) {
            Ok(rule) => rule,
            Err(e) => panic!("{pattern}: {e}"),
        }
    }

    #[test]
    fn refuses_bad_patterns() {
        assert!(RegexRule::compile("(unclosed").is_err());
        assert!(RegexRule::compile("a*").is_err());
        assert!(RegexRule::compile(r"\b").is_err());
        assert!(RegexRule::compile(r"[^\s\S]").is_err());
        assert!(RegexRule::compile(r"\w{1000}\w{1000}\w{1000}").is_err());
    }

    #[test]
    fn finds_and_holds() {
        let rule = compile(r"\bPROJ-\d{4}\b");
        let mut out = Vec::new();
        assert_eq!(
            rule.scan("see PROJ-1234 and PROJ-99", 0, false, &mut out),
            None
        );
        assert_eq!(out, vec![(4, 13)]);
        out.clear();
        assert_eq!(rule.scan("see PROJ-12", 0, true, &mut out), Some(4));
        assert_eq!(rule.scan("see PRO", 0, true, &mut out), Some(4));
        assert_eq!(rule.scan("see nothing", 0, true, &mut out), None);
        // A match at the end may still change (`\b`, longer digits).
        assert_eq!(rule.scan("see PROJ-1234", 0, true, &mut out), Some(4));
    }
}
