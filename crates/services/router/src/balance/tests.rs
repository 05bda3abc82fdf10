//! Unit tests; panicking is how tests fail.
#![allow(clippy::unwrap_used)]

use super::*;

const DRAWS: usize = 100_000;

fn ewma(ms: Option<u64>) -> LatencyEwma {
    let ewma = LatencyEwma::new();
    if let Some(ms) = ms {
        ewma.observe(Duration::from_millis(ms));
    }
    ewma
}

fn candidates<'a>(specs: &[(u32, u32)], latency: &'a LatencyEwma) -> Vec<Candidate<'a>> {
    let to_candidate = |&(weight, priority)| Candidate {
        weight,
        priority,
        latency,
    };
    specs.iter().map(to_candidate).collect()
}

/// How often each index comes first over `DRAWS` orders.
fn first_picks(strategy: Strategy, candidates: &[Candidate<'_>]) -> Vec<f64> {
    let mut rng = fastrand::Rng::with_seed(7);
    let mut counts = vec![0usize; candidates.len()];
    for _ in 0..DRAWS {
        counts[order(strategy, candidates, &mut rng)[0]] += 1;
    }
    counts.iter().map(|&c| c as f64 / DRAWS as f64).collect()
}

#[test]
fn ewma_starts_empty_takes_the_first_sample_then_smooths() {
    let ewma = LatencyEwma::new();
    assert_eq!(ewma.get(), None);
    ewma.observe(Duration::from_millis(100));
    assert_eq!(ewma.get(), Some(Duration::from_millis(100)));
    ewma.observe(Duration::from_millis(200));
    let ms = ewma.get().unwrap().as_secs_f64() * 1e3;
    assert!((ms - 130.0).abs() < 1e-6, "{ms}");
    ewma.observe(Duration::ZERO);
    assert!(ewma.get().is_some(), "a zero sample is still a sample");
}

#[test]
fn every_index_appears_exactly_once() {
    let latencies: Vec<_> = (0..7)
        .map(|i| ewma((i % 3 > 0).then_some(i * 10)))
        .collect();
    let mut rng = fastrand::Rng::with_seed(1);
    for strategy in [Strategy::Weighted, Strategy::LeastLatency] {
        for n in 0..latencies.len() {
            let list: Vec<_> = (0..n)
                .map(|i| Candidate {
                    weight: (i % 3) as u32,
                    priority: (i % 2) as u32,
                    latency: &latencies[i],
                })
                .collect();
            for _ in 0..100 {
                let mut got = order(strategy, &list, &mut rng);
                got.sort_unstable();
                assert_eq!(got, (0..n).collect::<Vec<_>>());
            }
        }
    }
}

#[test]
fn single_candidate() {
    let none = ewma(None);
    let list = candidates(&[(0, 9)], &none);
    for strategy in [Strategy::Weighted, Strategy::LeastLatency] {
        assert_eq!(order(strategy, &list, &mut fastrand::Rng::new()), [0]);
    }
}

#[test]
fn lower_priority_values_always_come_first() {
    let none = ewma(None);
    let list = candidates(&[(100, 2), (1, 0), (100, 1), (1, 0)], &none);
    let mut rng = fastrand::Rng::with_seed(3);
    for strategy in [Strategy::Weighted, Strategy::LeastLatency] {
        for _ in 0..1000 {
            let got = order(strategy, &list, &mut rng);
            let priorities: Vec<_> = got.iter().map(|&i| list[i].priority).collect();
            assert_eq!(priorities, [0, 0, 1, 2]);
        }
    }
}

#[test]
fn weighted_first_pick_follows_weights() {
    let none = ewma(None);
    let share = first_picks(Strategy::Weighted, &candidates(&[(1, 0), (3, 0)], &none));
    assert!((share[0] - 0.25).abs() < 0.02, "{share:?}");
    let share = first_picks(
        Strategy::Weighted,
        &candidates(&[(2, 0), (1, 0), (1, 0)], &none),
    );
    assert!((share[0] - 0.5).abs() < 0.02, "{share:?}");
}

#[test]
fn weight_zero_goes_last() {
    let none = ewma(None);
    let list = candidates(&[(0, 0), (1, 0), (0, 0), (5, 0)], &none);
    let mut rng = fastrand::Rng::with_seed(5);
    for _ in 0..1000 {
        let got = order(Strategy::Weighted, &list, &mut rng);
        assert!(
            list[got[0]].weight > 0 && list[got[1]].weight > 0,
            "{got:?}"
        );
    }
}

#[test]
fn least_latency_prefers_the_faster_but_still_probes_the_slower() {
    let (fast, slow) = (ewma(Some(100)), ewma(Some(900)));
    let list = [
        Candidate {
            weight: 1,
            priority: 0,
            latency: &slow,
        },
        Candidate {
            weight: 1,
            priority: 0,
            latency: &fast,
        },
    ];
    let share = first_picks(Strategy::LeastLatency, &list);
    assert!(share[1] >= 0.9, "{share:?}");
    assert!(share[0] > 0.01, "{share:?}");
}

#[test]
fn least_latency_prefers_deployments_without_samples() {
    let (fast, new) = (ewma(Some(1)), ewma(None));
    let list = [
        Candidate {
            weight: 1,
            priority: 0,
            latency: &fast,
        },
        Candidate {
            weight: 1,
            priority: 0,
            latency: &new,
        },
    ];
    assert!(first_picks(Strategy::LeastLatency, &list)[1] >= 0.9);
}

#[test]
fn strategy_config_names() {
    let parse = |s| serde_json::from_str::<Strategy>(s).unwrap();
    assert_eq!(parse(r#""least_latency""#), Strategy::LeastLatency);
    assert_eq!(parse(r#""weighted""#), Strategy::default());
}
