//! When to log a dependency's outage. During one, every request fails the
//! same way: a line per failure would flood the logs exactly when they are
//! needed. An outage is logged when it starts, then at most once per
//! interval with the number of failures since the last line, and when it
//! ends. The caller writes the lines (its own message, fields and log
//! target); this type decides when.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct OutageLog {
    every: Duration,
    /// Set while an outage lasts, so `recovered` costs one atomic load on
    /// the path where everything works.
    failing: AtomicBool,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// When the current outage began.
    since: Option<Instant>,
    last_logged: Option<Instant>,
    /// Failures not yet reported in a line.
    unlogged: u64,
    /// Failures during the current outage.
    total: u64,
}

/// What a caller logs when an outage ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recovered {
    /// Failures during the outage.
    pub failures: u64,
    pub lasted: Duration,
}

impl OutageLog {
    /// Repeats its line at most once per `every` while an outage lasts.
    pub fn new(every: Duration) -> OutageLog {
        OutageLog {
            every,
            failing: AtomicBool::new(false),
            state: Mutex::new(State::default()),
        }
    }

    /// Counts one failure. `Some(failures)`: log a line now (the outage just
    /// began, or `every` passed since the last line), reporting `failures`
    /// since the last line, this one included.
    pub fn failed(&self) -> Option<u64> {
        self.failed_at(Instant::now())
    }

    /// Counts one success. `Some`: an outage just ended; log it.
    pub fn recovered(&self) -> Option<Recovered> {
        if !self.failing.load(Ordering::Relaxed) {
            return None;
        }
        self.recovered_at(Instant::now())
    }

    fn failed_at(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        self.failing.store(true, Ordering::Relaxed);
        state.since.get_or_insert(now);
        state.unlogged += 1;
        state.total += 1;
        if state
            .last_logged
            .is_some_and(|last| now.saturating_duration_since(last) < self.every)
        {
            return None;
        }
        state.last_logged = Some(now);
        Some(std::mem::take(&mut state.unlogged))
    }

    fn recovered_at(&self, now: Instant) -> Option<Recovered> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        self.failing.store(false, Ordering::Relaxed);
        let since = state.since?;
        let recovered = Recovered {
            failures: state.total,
            lasted: now.saturating_duration_since(since),
        };
        *state = State::default();
        Some(recovered)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn logs_the_start_then_once_per_interval_with_the_count_then_the_end() {
        let log = OutageLog::new(MINUTE);
        let start = Instant::now();
        let at = |seconds| start + Duration::from_secs(seconds);
        assert_eq!(log.recovered_at(at(0)), None, "no outage, nothing to end");
        assert_eq!(log.failed_at(at(1)), Some(1), "the first failure is logged");
        assert_eq!(log.failed_at(at(2)), None);
        assert_eq!(log.failed_at(at(30)), None);
        assert_eq!(log.failed_at(at(60)), None, "59 s after the last line");
        assert_eq!(
            log.failed_at(at(61)),
            Some(4),
            "a minute later, with the count"
        );
        assert_eq!(log.failed_at(at(62)), None);
        assert_eq!(
            log.recovered_at(at(70)),
            Some(Recovered {
                failures: 6,
                lasted: Duration::from_secs(69),
            })
        );
        assert_eq!(log.recovered_at(at(71)), None, "ended once");
        assert_eq!(
            log.failed_at(at(72)),
            Some(1),
            "a new outage is logged at once"
        );
    }

    #[test]
    fn success_without_an_outage_is_silent() {
        let log = OutageLog::new(MINUTE);
        for _ in 0..3 {
            assert_eq!(log.recovered(), None);
        }
    }
}
