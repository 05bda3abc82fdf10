//! Word lists: terms matched in normalised text with an Aho-Corasick
//! automaton (leftmost-longest), for all the rules of one group (same
//! normalisation options, same direction) at once.
//!
//! Each rule gets its own leftmost-longest matches, so a term of one rule
//! cannot hide a term of another inside it (a `flag` list's `敏感词` does not
//! swallow a `block` list's `感词`). A [`StartFilter`] picks the positions
//! worth an anchored walk of the automaton; a walk still alive at the end of
//! a stream's text is a partial match, and where it starts is what the
//! stream holds back.

use aho_corasick::automaton::Automaton;
use aho_corasick::automaton::StateID;
use aho_corasick::nfa::contiguous::NFA;
use aho_corasick::{Anchored, MatchKind};
use unicode_normalization::char::decompose_canonical;

use crate::charclass::is_separator;
use crate::normalise::{LastCluster, Normalised, Options, normalise};
use crate::startfilter::{StartFilter, utf8_len};

pub(crate) struct WordMatcher {
    pub options: Options,
    nfa: NFA,
    start: StateID,
    /// Pattern `p`'s rules are `slots[offsets[p]..offsets[p + 1]]`, each a
    /// position in `rules`.
    offsets: Vec<u32>,
    slots: Vec<u16>,
    /// The policy's rule indices this matcher serves.
    rules: Vec<usize>,
    filter: StartFilter,
    /// First characters of the canonical decompositions of the non-ASCII
    /// characters in the terms (sorted): a stream's last character with
    /// one of these as its base may still compose into one of them.
    composable_bases: Vec<char>,
}

impl std::fmt::Debug for WordMatcher {
    /// Sizes only: terms may be sensitive themselves.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WordMatcher")
            .field("options", &self.options)
            .field("rules", &self.rules)
            .field("terms", &self.nfa.patterns_len())
            .finish_non_exhaustive()
    }
}

/// A match, in offsets of the text given to [`WordMatcher::scan`].
#[derive(Debug)]
pub(crate) struct WordHit {
    pub rule: usize,
    pub start: usize,
    pub end: usize,
    /// The normalised matched text (what the match hash covers).
    pub normalised: String,
}

impl WordMatcher {
    /// `rules`: (the policy's rule index, its terms). Terms normalise like
    /// text; empty ones are dropped. Errors name the rule index that ended
    /// up with no usable term.
    pub fn build(
        options: Options,
        rules: &[(usize, Vec<&str>)],
    ) -> Result<WordMatcher, BuildError> {
        // (normalised term, rule slot), sorted and deduplicated: sorted
        // terms also build the automaton's trie with better locality.
        let mut entries: Vec<(String, u16)> = Vec::new();
        for (slot, (rule, terms)) in rules.iter().enumerate() {
            let before = entries.len();
            for term in terms {
                let normalised = normalise(term, None, options);
                let mut text = normalised.text();
                if options.skip_separators {
                    text = text.trim_matches(is_separator);
                }
                if !text.is_empty() {
                    entries.push((text.to_owned(), slot as u16));
                }
            }
            if entries.len() == before {
                return Err(BuildError::NoTerms(*rule));
            }
        }
        entries.sort_unstable();
        entries.dedup();
        let mut patterns: Vec<String> = Vec::with_capacity(entries.len());
        let mut offsets = Vec::with_capacity(entries.len() + 1);
        let mut slots = Vec::with_capacity(entries.len());
        for (term, slot) in entries {
            if patterns.last() != Some(&term) {
                offsets.push(slots.len() as u32);
                patterns.push(term);
            }
            slots.push(slot);
        }
        offsets.push(slots.len() as u32);
        let nfa = NFA::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .prefilter(false)
            .build(&patterns)
            .map_err(|e| BuildError::Automaton(e.to_string()))?;
        let start = nfa
            .start_state(Anchored::Yes)
            .map_err(|e| BuildError::Automaton(e.to_string()))?;
        let filter = StartFilter::new(patterns.iter().map(|p| p.as_bytes()));
        let mut composable_bases: Vec<char> = patterns
            .iter()
            .flat_map(|p| p.chars())
            // ASCII and CJK ideographs never decompose.
            .filter(|&c| !c.is_ascii() && !matches!(c, '\u{3400}'..='\u{9FFF}'))
            .filter_map(decomposed_base)
            .collect();
        composable_bases.sort_unstable();
        composable_bases.dedup();
        Ok(WordMatcher {
            options,
            nfa,
            start,
            offsets,
            slots,
            rules: rules.iter().map(|(rule, _)| *rule).collect(),
            filter,
            composable_bases,
        })
    }

    /// Every match in `normalised` (of the input `text`), leftmost-longest
    /// per rule, in input offsets. With `stream`, also returns the input
    /// offset from which text could still become part of a match.
    pub fn scan(
        &self,
        normalised: &Normalised<'_>,
        stream: bool,
        hits: &mut Vec<WordHit>,
    ) -> Option<usize> {
        let text = normalised.text();
        let bytes = text.as_bytes();
        // A stream's text may still change at its end: undecided trailing
        // separators may be dropped, and the last character may compose
        // with a combining mark yet to come. A walk alive up to there is a
        // partial match too.
        let composable = if stream {
            self.composable_tail(normalised)
        } else {
            None
        };
        let horizon = normalised
            .undecided_separators
            .unwrap_or(bytes.len())
            .min(composable.map_or(bytes.len(), |c| c.norm));
        let rules = self.rules.len();
        // Per rule: where its next match may start, and the longest match
        // at the current position. On the stack for the usual few rules.
        let mut stack = [0usize; 16];
        let mut heap = Vec::new();
        let (next_free, longest) = if rules <= 8 {
            let (a, b) = stack.split_at_mut(8);
            (&mut a[..rules], &mut b[..rules])
        } else {
            heap.resize(2 * rules, 0);
            heap.split_at_mut(rules)
        };
        let mut hold: Option<usize> = None;
        let mut at = 0;
        // Positions with eight bytes before the horizon take the fast test.
        let fast_until = horizon.saturating_sub(7);
        let only_long = self.filter.only_long();
        while at < bytes.len() {
            if only_long {
                // The common case, in a tight loop: skip to the next
                // position that passes the filter.
                at = self.filter.skip_long(bytes, at, fast_until);
                if at >= bytes.len() {
                    break;
                }
            }
            let may_start = if at < fast_until {
                let mut word = [0u8; 8];
                word.copy_from_slice(&bytes[at..at + 8]);
                self.filter.may_start_word(u64::from_le_bytes(word))
            } else {
                self.filter.may_start(bytes, at, horizon)
            };
            if !may_start {
                at += utf8_len(bytes[at]);
                continue;
            }
            let died = self.walk(bytes, at, |pattern, end| {
                for &slot in self.slots_of(pattern) {
                    longest[usize::from(slot)] = end;
                }
            });
            if stream
                && hold.is_none()
                && (died == bytes.len() || (at < horizon && died >= horizon))
            {
                hold = Some(at);
            }
            let mut skip_to = None;
            for slot in 0..rules {
                let end = std::mem::take(&mut longest[slot]);
                if end == 0 || at < next_free[slot] {
                    continue;
                }
                next_free[slot] = end;
                skip_to = Some(end);
                hits.push(WordHit {
                    rule: self.rules[slot],
                    start: normalised.orig_start(at),
                    end: normalised.orig_end(end),
                    normalised: text[at..end].to_owned(),
                });
            }
            // One rule: nothing can start inside its match (leftmost-longest).
            at = match skip_to {
                Some(end) if rules == 1 => end,
                _ => at + utf8_len(bytes[at]),
            };
        }
        if !stream {
            return None;
        }
        let hold = hold.map(|at| normalised.orig_start(at));
        match composable {
            Some(tail) => Some(hold.map_or(tail.orig, |h| h.min(tail.orig))),
            None => hold,
        }
    }

    /// The last cluster, if a combining mark still to come could make it a
    /// character some term contains.
    fn composable_tail(&self, normalised: &Normalised<'_>) -> Option<LastCluster> {
        let tail = normalised.last_cluster?;
        if self.composable_bases.is_empty() {
            return None;
        }
        let lower = tail.first.to_lowercase().next()?;
        let base = decomposed_base(lower).unwrap_or(lower);
        self.composable_bases
            .binary_search(&base)
            .is_ok()
            .then_some(tail)
    }

    fn slots_of(&self, pattern: usize) -> &[u16] {
        let from = self.offsets[pattern] as usize;
        let to = self.offsets[pattern + 1] as usize;
        &self.slots[from..to]
    }

    /// Walks the anchored automaton from `at`, reporting each term that ends
    /// on the way (shorter first). Returns the offset of the byte the walk
    /// could not take, or the text's length if it is still alive there.
    #[inline]
    fn walk(&self, bytes: &[u8], at: usize, mut on_match: impl FnMut(usize, usize)) -> usize {
        let nfa = &self.nfa;
        let mut state = self.start;
        for (i, &byte) in bytes[at..].iter().enumerate() {
            state = nfa.next_state(Anchored::Yes, state, byte);
            if nfa.is_special(state) {
                if nfa.is_dead(state) {
                    return at + i;
                }
                if nfa.is_match(state) {
                    on_match(nfa.match_pattern(state, 0).as_usize(), at + i + 1);
                }
            }
        }
        bytes.len()
    }

    pub fn memory_usage(&self) -> usize {
        self.nfa.memory_usage()
            + self.offsets.capacity() * 4
            + self.slots.capacity() * 2
            + self.filter.memory_usage()
            + self.composable_bases.capacity() * 4
    }
}

/// The base character of `c`'s canonical decomposition, if it decomposes.
fn decomposed_base(c: char) -> Option<char> {
    let mut first = None;
    let mut count = 0;
    decompose_canonical(c, |d| {
        first.get_or_insert(d);
        count += 1;
    });
    first.filter(|_| count > 1)
}

#[derive(Debug)]
pub(crate) enum BuildError {
    /// The rule with this index has no term left after normalisation.
    NoTerms(usize),
    Automaton(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher(options: Options, rules: &[&[&str]]) -> WordMatcher {
        let rules: Vec<(usize, Vec<&str>)> = rules
            .iter()
            .enumerate()
            .map(|(i, terms)| (i, terms.to_vec()))
            .collect();
        match WordMatcher::build(options, &rules) {
            Ok(m) => m,
            Err(e) => panic!("{e:?}"),
        }
    }

    fn find(m: &WordMatcher, text: &str) -> Vec<(usize, String)> {
        let n = normalise(text, None, m.options);
        let mut hits = Vec::new();
        m.scan(&n, false, &mut hits);
        hits.into_iter()
            .map(|h| (h.rule, text[h.start..h.end].to_owned()))
            .collect()
    }

    #[test]
    fn leftmost_longest_per_rule() {
        let m = matcher(Options::default(), &[&["敏感", "敏感词"], &["感词"]]);
        let hits = find(&m, "这是敏感词吗");
        assert_eq!(hits, vec![(0, "敏感词".to_owned()), (1, "感词".to_owned())]);
    }

    #[test]
    fn normalised_matches_map_to_original_characters() {
        let m = matcher(Options::default(), &[&["abc", "badword"]]);
        assert_eq!(find(&m, "x ＡＢＣ y"), vec![(0, "ＡＢＣ".to_owned())]);
        assert_eq!(find(&m, "BadWord"), vec![(0, "BadWord".to_owned())]);
        assert_eq!(
            find(&m, "bad\u{200B}word"),
            vec![(0, "bad\u{200B}word".to_owned())]
        );
    }

    #[test]
    fn stream_hold_is_the_partial_match() {
        let m = matcher(Options::default(), &[&["敏感词"]]);
        let mut hits = Vec::new();
        let text = "你好敏感";
        let n = normalise(text, None, m.options);
        assert_eq!(m.scan(&n, true, &mut hits), Some("你好".len()));
        let n = normalise("你好", None, m.options);
        assert_eq!(m.scan(&n, true, &mut hits), None);
        assert!(hits.is_empty());
    }
}
