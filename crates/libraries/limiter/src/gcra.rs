//! GCRA arithmetic shared by the memory store; `acquire.lua` and
//! `settle.lua` repeat these expressions in the same order so that both
//! stores round identically.

/// The period of the per-minute limits, in microseconds.
pub(crate) const PERIOD_US: f64 = 60_000_000.0;
/// Float error tolerated when comparing delays (µs): differences from `now`
/// carry ~1e-8 µs of rounding per operation, so a burst of exactly `L` must
/// not fail by a hair; 1 ns is far below one emission interval for any
/// limit under 6e10 per minute, so `L + 1` never passes. Retry-after, reset
/// and remaining use the same tolerance, so they agree with the check.
const EPS_US: f64 = 1e-3;
/// What an impossible request (cost above the limit, or a zero limit) is
/// told to wait: one full period.
pub(crate) const IMPOSSIBLE_RETRY_MS: u64 = 60_000;

/// A theoretical arrival time: whole microseconds plus a fraction in [0, 1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Tat {
    pub whole: u64,
    pub frac: f64,
}

impl Tat {
    /// The TAT `delay` microseconds after `now` (`delay >= 0`).
    pub fn after(now: u64, delay: f64) -> Self {
        let whole = delay.floor();
        Tat {
            whole: now + whole as u64,
            frac: delay - whole,
        }
    }
}

/// `max(tat, now) - now`: how far ahead of now the bucket's TAT is.
pub(crate) fn delay(tat: Option<Tat>, now: u64) -> f64 {
    match tat {
        None => 0.0,
        Some(tat) => ((tat.whole as f64 - now as f64) + tat.frac).max(0.0),
    }
}

/// `cost · T` in microseconds (signed for settle corrections).
pub(crate) fn increment(cost: f64, limit: u64) -> f64 {
    cost * PERIOD_US / limit as f64
}

/// Checks a request of `cost` against a bucket whose TAT is `delay` ahead of
/// now: `Ok(new delay)` if it passes, `Err(retry_after_ms)` otherwise.
pub(crate) fn check(delay: f64, cost: u64, limit: u64) -> Result<f64, u64> {
    if limit == 0 || cost > limit {
        return Err(IMPOSSIBLE_RETRY_MS);
    }
    let new_delay = delay + increment(cost as f64, limit);
    if new_delay <= PERIOD_US + EPS_US {
        Ok(new_delay)
    } else {
        Err(ceil_ms(new_delay - PERIOD_US - EPS_US).max(1))
    }
}

/// Cells left in a bucket whose TAT is `delay` ahead of now.
pub(crate) fn remaining(delay: f64, limit: u64) -> u64 {
    let cells = ((PERIOD_US - delay + EPS_US) * limit as f64 / PERIOD_US).floor();
    if cells > 0.0 { cells as u64 } else { 0 }
}

/// Time until a bucket whose TAT is `delay` ahead of now is full again.
pub(crate) fn reset_ms(delay: f64) -> u64 {
    ceil_ms(delay - EPS_US)
}

/// Microseconds to whole milliseconds, rounded up (never negative).
pub(crate) fn ceil_ms(us: f64) -> u64 {
    let ms = (us / 1000.0).ceil();
    if ms > 0.0 { ms as u64 } else { 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A burst of exactly L passes for awkward limits, L + 1 never does, even
    /// at a realistic absolute time where a plain f64 TAT would round.
    #[test]
    fn exact_bursts() {
        let now = 1_767_225_599_999_999;
        for limit in [1, 3, 7, 13, 20, 49, 97, 1000, 99_991] {
            let mut tat = None;
            for i in 0..limit {
                let d = check(delay(tat, now), 1, limit);
                let Ok(d) = d else {
                    panic!("limit {limit}: request {i} denied");
                };
                tat = Some(Tat::after(now, d));
            }
            assert_eq!(remaining(delay(tat, now), limit), 0, "limit {limit}");
            assert!(check(delay(tat, now), 1, limit).is_err(), "limit {limit}");
        }
    }

    #[test]
    fn impossible_and_retry() {
        assert_eq!(check(0.0, 11, 10), Err(IMPOSSIBLE_RETRY_MS));
        assert_eq!(check(0.0, 0, 0), Err(IMPOSSIBLE_RETRY_MS));
        // Full bucket of 20/min: the next cell frees in 3 s.
        assert_eq!(check(PERIOD_US, 1, 20), Err(3000));
        assert_eq!(ceil_ms(0.0), 0);
        assert_eq!(ceil_ms(1.0), 1);
        assert_eq!(reset_ms(3_000_000.000_000_1), 3000);
        // Limit 1: the next request passes 60 s later, not a tolerance earlier.
        assert_eq!(check(PERIOD_US - 1000.0, 1, 1), Err(59_999));
    }
}
