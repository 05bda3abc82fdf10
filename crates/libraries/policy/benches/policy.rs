//! Content-policy benchmarks (targets from issue 12):
//! 1. check of a 10,000-character mixed Chinese/English prompt against
//!    50,000 terms plus every detector: <= 30 us;
//! 2. stream scanning per chunk (a few to ~20 characters): <= 1 us;
//! 3. compiling the 50,000-term matcher: <= 200 ms and <= 50 MB.
//!
//! Terms and text are generated deterministically. Memory is reported
//! twice, once as the matchers' own estimate and once as the growth of the
//! process's resident set while compiling (the lints forbid the `unsafe`
//! a counting allocator needs). Besides criterion's wall-clock figures the
//! bench prints on-CPU time per operation (Linux schedstat), which other
//! processes sharing the cores do not inflate. `POLICY_BENCH_PARTS=1`
//! also prints the check's cost for word lists alone, detectors alone and
//! a 100-term list.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use llmgw_policy::{
    Action, Direction, Policy, PolicySet, PolicySource, PolicySpec, RuleKind, RuleSpec,
    StreamScanner,
};

/// xorshift64: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// 3,500 "common" ideographs, picked from the unified block.
fn alphabet(rng: &mut Rng) -> Vec<char> {
    let mut chars: Vec<char> = (0x4E00..0x9FA5).filter_map(char::from_u32).collect();
    for i in (1..chars.len()).rev() {
        chars.swap(i, rng.below(i + 1));
    }
    chars.truncate(3500);
    chars
}

fn english_word(rng: &mut Rng, min: usize, max: usize) -> String {
    let len = min + rng.below(max - min + 1);
    (0..len)
        .map(|_| char::from(b'a' + rng.below(26) as u8))
        .collect()
}

/// 50,000 terms: 70% Chinese (2-6 characters), 30% English (5-12 letters).
fn terms(rng: &mut Rng, cjk: &[char]) -> Vec<String> {
    (0..50_000)
        .map(|i| {
            if i % 10 < 7 {
                let len = 2 + rng.below(5);
                (0..len).map(|_| cjk[rng.below(cjk.len())]).collect()
            } else {
                english_word(rng, 5, 12)
            }
        })
        .collect()
}

/// A 10,000-character prompt: Chinese sentences with full-width
/// punctuation, English sentences, digits, and a few things to find.
fn prompt(rng: &mut Rng, cjk: &[char], terms: &[String]) -> String {
    let mut text = String::new();
    let mut sentences = 0;
    while text.chars().count() < 10_000 {
        sentences += 1;
        if rng.below(2) == 0 {
            for _ in 0..(8 + rng.below(20)) {
                text.push(cjk[rng.below(cjk.len())]);
            }
            text.push_str(["，", "。", "！", "？", "、"][rng.below(5)]);
        } else {
            for w in 0..(4 + rng.below(10)) {
                let word = english_word(rng, 1, 9);
                if w == 0 {
                    text.push_str(&word[..1].to_uppercase());
                    text.push_str(&word[1..]);
                } else {
                    text.push_str(&word);
                }
                text.push(' ');
            }
            text.push_str(["in 2024. ", "v1.2 ", "42% ", ". "][rng.below(4)]);
        }
        match sentences % 97 {
            10 => text.push_str(&terms[rng.below(terms.len())]),
            40 => text.push_str(" mail zhang.san@example.com "),
            70 => text.push_str("电话13800138000，"),
            _ => {}
        }
    }
    text
}

fn rule(id: &str, kind: RuleKind, action: Action) -> RuleSpec {
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

fn source(terms: Vec<String>) -> PolicySource {
    let mut words = rule("words", RuleKind::Words, Action::Redact);
    words.word_lists = vec!["big".to_owned()];
    let mut rules = vec![words];
    for (id, kind) in [
        ("email", RuleKind::Email),
        ("phone", RuleKind::Phone),
        ("id", RuleKind::ResidentId),
        ("card", RuleKind::BankCard),
        ("ip", RuleKind::Ipv4),
        ("secret", RuleKind::Secret),
    ] {
        rules.push(rule(id, kind, Action::Redact));
    }
    PolicySource {
        default: "p".to_owned(),
        policies: BTreeMap::from([(
            "p".to_owned(),
            PolicySpec {
                audit_excerpts: false,
                rules,
            },
        )]),
        word_lists: BTreeMap::from([("big".to_owned(), terms)]),
        tenants: BTreeMap::new(),
    }
}

fn compile(source: &PolicySource) -> Arc<Policy> {
    let set = match PolicySet::compile(source, b"bench key") {
        Ok(set) => set,
        Err(e) => panic!("{e}"),
    };
    match set.get("p") {
        Some(policy) => Arc::clone(policy),
        None => panic!("policy p missing"),
    }
}

/// This thread's time on a CPU so far, in ns (Linux schedstat): unlike
/// wall time, not inflated by other processes sharing the cores.
fn on_cpu_ns() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    stat.split_whitespace().next()?.parse().ok()
}

/// On-CPU time of `op` per run, in ns: the best of five rounds of `n / 5`
/// runs (the round least disturbed by cache-hungry neighbours).
fn on_cpu_per_op(n: u32, mut op: impl FnMut()) -> f64 {
    let rounds = 5;
    let per_round = (n / rounds).max(1);
    (0..rounds)
        .map(|_| {
            let start = on_cpu_ns();
            for _ in 0..per_round {
                op();
            }
            on_cpu_ns().zip(start).map_or(f64::NAN, |(end, start)| {
                (end - start) as f64 / f64::from(per_round)
            })
        })
        .fold(f64::INFINITY, f64::min)
}

/// Resident set size in bytes (Linux), for the memory figure.
fn resident_bytes() -> Option<usize> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: usize = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// Chunks of 1-20 characters, like a model's decoded deltas.
fn chunks(rng: &mut Rng, text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut at = 0;
    while at < chars.len() {
        let len = (1 + rng.below(20)).min(chars.len() - at);
        out.push(chars[at..at + len].iter().collect());
        at += len;
    }
    out
}

fn benches(c: &mut Criterion) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let cjk = alphabet(&mut rng);
    let terms = terms(&mut rng, &cjk);
    let text = prompt(&mut rng, &cjk, &terms);
    let source = source(terms);

    let before = resident_bytes();
    let started = Instant::now();
    let cpu_started = on_cpu_ns();
    let policy = compile(&source);
    let took = started.elapsed();
    let cpu_took = on_cpu_ns()
        .zip(cpu_started)
        .map_or(f64::NAN, |(e, s)| (e - s) as f64 / 1e6);
    let after = resident_bytes();
    println!(
        "matcher for 50,000 terms: compiled in {took:?} ({cpu_took:.0} ms on a CPU); estimated heap {:.1} MB; resident set grew {:.1} MB",
        policy.memory_usage() as f64 / 1e6,
        after
            .zip(before)
            .map_or(f64::NAN, |(a, b)| a.saturating_sub(b) as f64 / 1e6),
    );
    let findings = policy.check(Direction::Input, &text);
    println!(
        "prompt: {} characters, {} bytes, {} hits",
        text.chars().count(),
        text.len(),
        findings.hits.len()
    );

    if std::env::var_os("POLICY_BENCH_PARTS").is_some() {
        let mut words_only = source.clone();
        if let Some(p) = words_only.policies.get_mut("p") {
            p.rules.truncate(1);
        }
        let mut detectors_only = source.clone();
        if let Some(p) = detectors_only.policies.get_mut("p") {
            p.rules.remove(0);
        }
        let mut tiny_words = source.clone();
        if let Some(list) = tiny_words.word_lists.get_mut("big") {
            list.truncate(100);
        }
        for (name, part) in [
            ("words only", words_only),
            ("detectors only", detectors_only),
            ("100 terms + detectors", tiny_words),
        ] {
            let p = compile(&part);
            let ns = on_cpu_per_op(2000, || {
                black_box(p.check(Direction::Input, black_box(&text)));
            });
            println!("  part {name}: check {:.1} us on a CPU", ns / 1000.0);
        }
    }
    let pieces = chunks(&mut rng, &text);
    let check_ns = on_cpu_per_op(2000, || {
        black_box(policy.check(Direction::Input, black_box(&text)));
    });
    let mut scanner: StreamScanner = policy.stream();
    let mut next = 0;
    let push_ns = on_cpu_per_op(200_000, || {
        black_box(scanner.push(black_box(&pieces[next])));
        next = (next + 1) % pieces.len();
        if next == 0 {
            black_box(scanner.finish());
            scanner = policy.stream();
        }
    });
    let mut scanner: StreamScanner = policy.stream();
    let no_policy = Arc::new(
        match Policy::compile("none", &PolicySpec::default(), &BTreeMap::new(), b"") {
            Ok(policy) => policy,
            Err(e) => panic!("{e}"),
        },
    );
    let mut bare: StreamScanner = no_policy.stream();
    let bare_ns = on_cpu_per_op(200_000, || {
        black_box(bare.push(black_box(&pieces[next])));
        next = (next + 1) % pieces.len();
    });
    println!(
        "on-CPU time: check {:.1} us; stream push {:.0} ns per chunk ({} chunks of 1-20 chars), \
         {:.0} ns with no rule for output",
        check_ns / 1000.0,
        push_ns,
        pieces.len(),
        bare_ns
    );

    c.bench_function("check 10k-char prompt, 50k terms + all detectors", |b| {
        b.iter(|| black_box(policy.check(Direction::Input, black_box(&text))))
    });

    c.bench_function(
        "stream push per chunk (1-20 chars), 50k terms + all detectors",
        |b| {
            b.iter(|| {
                let scanned = scanner.push(black_box(&pieces[next]));
                next = (next + 1) % pieces.len();
                if next == 0 {
                    black_box(scanner.finish());
                    scanner = policy.stream();
                }
                black_box(scanned)
            })
        },
    );

    let mut group = c.benchmark_group("compile");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    group.bench_function("compile 50k-term matcher", |b| {
        b.iter(|| black_box(compile(&source)))
    });
    group.finish();
}

criterion_group!(policy_benches, benches);
criterion_main!(policy_benches);
