//! Choosing deployments: the order in which one request tries the
//! deployments of an alias. Runs on every request, so it allocates nothing
//! but the returned `Vec` and takes a few tens of nanoseconds for the usual
//! one to four candidates.
//!
//! Randomness: callers pass a `fastrand::Rng`. In request handlers use
//! `fastrand::Rng::new()`, which forks the thread-local generator (a few
//! nanoseconds, no syscall, no lock); tests pass `Rng::with_seed` so their
//! draws are reproducible.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Random, in proportion to `weight`: spreads load (and rate limits) as
    /// configured.
    #[default]
    Weighted,
    /// Power of two choices on time to first token: favours the faster
    /// deployment without sending everything to it.
    LeastLatency,
}

/// Smoothing factor: a new sample moves the average 30 % of the way, so a
/// deployment that slows down is noticed within a few requests.
const ALPHA: f64 = 0.3;

/// Share of least-latency picks made uniformly at random, so a deployment
/// that was slow keeps getting a little traffic and can show it recovered.
const EXPLORE: f64 = 0.05;

/// Time-to-first-token EWMA, lock-free: the average in nanoseconds as `f64`
/// bits in an `AtomicU64`, 0 meaning no sample yet.
#[derive(Debug, Default)]
pub struct LatencyEwma {
    bits: AtomicU64,
}

impl LatencyEwma {
    pub fn new() -> Self {
        LatencyEwma::default()
    }

    pub fn observe(&self, ttft: Duration) {
        // At least 1 ns, so a sample is never mistaken for "no sample".
        let sample = (ttft.as_secs_f64() * 1e9).max(1.0);
        // Relaxed: the value stands alone, nothing is published through it.
        // The closure always returns Some, so the update cannot fail.
        let _ = self
            .bits
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                let next = if bits == 0 {
                    sample
                } else {
                    let old = f64::from_bits(bits);
                    old + ALPHA * (sample - old)
                };
                Some(next.to_bits())
            });
    }

    /// Routing only needs `key`; tests read the value.
    #[cfg(test)]
    pub fn get(&self) -> Option<Duration> {
        match self.bits.load(Ordering::Relaxed) {
            0 => None,
            bits => Some(Duration::from_secs_f64(f64::from_bits(bits) / 1e9)),
        }
    }

    /// A sort key: for non-negative floats the bit patterns order like the
    /// values, and "no sample" (0) sorts first, so new deployments get probed.
    fn key(&self) -> u64 {
        self.bits.load(Ordering::Relaxed)
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    pub weight: u32,
    pub priority: u32,
    pub latency: &'a LatencyEwma,
}

/// The order in which to try the candidates, as indexes into `candidates`,
/// each exactly once. Lowest `priority` value first: a higher value is only
/// for when every lower one failed or is open. Within one priority level:
///
/// - `Weighted`: weighted random order without replacement; weight 0 comes
///   after every positive weight of its level (in random order).
/// - `LeastLatency`: power of two choices: of two distinct random
///   candidates the one with the lower EWMA goes first (one with no sample
///   yet wins), then the rest by the same rule; 5 % of picks are uniformly
///   random instead.
pub fn order(
    strategy: Strategy,
    candidates: &[Candidate<'_>],
    rng: &mut fastrand::Rng,
) -> Vec<usize> {
    let mut order: Vec<usize> = (0..candidates.len()).collect();
    // Unstable sort: in place, never allocates; ties are shuffled below anyway.
    order.sort_unstable_by_key(|&i| candidates[i].priority);
    let mut rest = &mut order[..];
    while let Some(first) = rest.first() {
        let priority = candidates[*first].priority;
        let len = rest
            .iter()
            .take_while(|&&i| candidates[i].priority == priority)
            .count();
        let (level, tail) = rest.split_at_mut(len);
        match strategy {
            Strategy::Weighted => weighted(level, candidates, rng),
            Strategy::LeastLatency => least_latency(level, candidates, rng),
        }
        rest = tail;
    }
    order
}

/// Moves a weighted random pick to the front, then repeats on the rest.
/// Quadratic, which beats anything clever for a handful of candidates.
fn weighted(level: &mut [usize], candidates: &[Candidate<'_>], rng: &mut fastrand::Rng) {
    let mut total: u64 = level.iter().map(|&i| u64::from(candidates[i].weight)).sum();
    for start in 0..level.len().saturating_sub(1) {
        let rest = &mut level[start..];
        if total == 0 {
            // Only weight-0 candidates are left: any order will do.
            rng.shuffle(rest);
            return;
        }
        let mut point = rng.u64(..total);
        let mut pick = 0;
        for (position, &i) in rest.iter().enumerate() {
            let weight = u64::from(candidates[i].weight);
            if point < weight {
                pick = position;
                break;
            }
            point -= weight;
        }
        total -= u64::from(candidates[rest[pick]].weight);
        rest.swap(0, pick);
    }
}

fn least_latency(level: &mut [usize], candidates: &[Candidate<'_>], rng: &mut fastrand::Rng) {
    for start in 0..level.len().saturating_sub(1) {
        let rest = &mut level[start..];
        let a = rng.usize(..rest.len());
        let pick = if rng.f64() < EXPLORE {
            a
        } else {
            // A second candidate distinct from the first.
            let mut b = rng.usize(..rest.len() - 1);
            if b >= a {
                b += 1;
            }
            // On a tie `a` stays: it was drawn at random.
            let key = |position: usize| candidates[rest[position]].latency.key();
            if key(b) < key(a) { b } else { a }
        };
        rest.swap(0, pick);
    }
}

#[cfg(test)]
mod tests;
