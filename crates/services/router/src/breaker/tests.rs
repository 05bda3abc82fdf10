//! Unit tests; panicking is how tests fail.
#![allow(clippy::unwrap_used)]

use super::*;

/// A breaker on a hand-advanced clock, with its gauge.
struct Fixture {
    breaker: Breaker,
    now: Arc<Mutex<Instant>>,
    gauge: Gauge,
}

impl Fixture {
    fn new(config: BreakerConfig) -> Fixture {
        let now = Arc::new(Mutex::new(Instant::now()));
        let clock_now = Arc::clone(&now);
        let clock: Clock = Arc::new(move || *clock_now.lock().unwrap());
        let gauge = Gauge::default();
        let breaker = Breaker::with_clock("test/model", config, gauge.clone(), clock);
        Fixture {
            breaker,
            now,
            gauge,
        }
    }

    fn advance(&self, ms: u64) {
        *self.now.lock().unwrap() += Duration::from_millis(ms);
    }

    fn results(&self, pattern: &str) {
        for c in pattern.chars() {
            let permit = self.breaker.try_acquire().unwrap();
            if c == 'f' {
                permit.failure()
            } else {
                permit.success()
            }
        }
    }

    /// Opened by three failures in a row, then cooled down.
    fn half_open(config: BreakerConfig) -> Fixture {
        let f = Fixture::new(BreakerConfig {
            consecutive_failures: 3,
            ..config
        });
        f.results("fff");
        f.advance(f.breaker.shared.config.open_ms);
        f
    }
}

fn only_consecutive(n: u32) -> BreakerConfig {
    BreakerConfig {
        consecutive_failures: n,
        min_requests: u32::MAX,
        ..Default::default()
    }
}

#[test]
fn opens_after_consecutive_failures() {
    let f = Fixture::new(only_consecutive(3));
    assert_eq!(f.gauge.get(), 0);
    f.results("ff");
    assert_eq!(f.breaker.state(), BreakerState::Closed);
    f.results("f");
    assert_eq!(f.breaker.state(), BreakerState::Open);
    assert_eq!(f.gauge.get(), 1);
}

#[test]
fn successes_reset_consecutive_count() {
    let f = Fixture::new(only_consecutive(3));
    f.results("ffsffsff");
    assert_eq!(f.breaker.state(), BreakerState::Closed);
    f.results("f");
    assert_eq!(f.breaker.state(), BreakerState::Open);
}

#[test]
fn opens_by_rate_once_the_window_has_enough_results() {
    let config = BreakerConfig {
        consecutive_failures: 0,
        min_requests: 10,
        ..Default::default()
    };
    let f = Fixture::new(config);
    f.results("sfsfsfsfs"); // 4 of 9: too few results, rate too low
    assert_eq!(f.breaker.state(), BreakerState::Closed);
    f.results("f"); // 5 of 10
    assert_eq!(f.breaker.state(), BreakerState::Open);
}

#[test]
fn rate_forgets_results_older_than_the_window() {
    let config = BreakerConfig {
        consecutive_failures: 0,
        min_requests: 4,
        ..Default::default()
    };
    let f = Fixture::new(config);
    f.results("fff");
    f.advance(30_000);
    f.results("sssf"); // 1 of 4; with the old failures it would be 4 of 7
    assert_eq!(f.breaker.state(), BreakerState::Closed);
}

#[test]
fn open_rejects_until_cool_down_then_admits_exactly_the_probes() {
    let f = Fixture::new(BreakerConfig {
        half_open_probes: 2,
        ..only_consecutive(3)
    });
    f.results("fff");
    assert!(f.breaker.try_acquire().is_none());
    f.advance(9_999);
    assert!(f.breaker.try_acquire().is_none());
    f.advance(1);
    let probes = [f.breaker.try_acquire(), f.breaker.try_acquire()];
    assert!(probes.iter().all(Option::is_some));
    for _ in 0..3 {
        // A refusal must not free a slot either.
        assert!(f.breaker.try_acquire().is_none());
    }
    assert_eq!(f.breaker.state(), BreakerState::HalfOpen);
    assert_eq!(f.gauge.get(), 2);
}

#[test]
fn probe_success_closes_with_fresh_counters() {
    let f = Fixture::half_open(BreakerConfig::default());
    f.breaker.try_acquire().expect("probe").success();
    assert_eq!(f.breaker.state(), BreakerState::Closed);
    assert_eq!(f.gauge.get(), 0);
    f.results("ff"); // the failures before opening no longer count
    assert_eq!(f.breaker.state(), BreakerState::Closed);
}

#[test]
fn probe_failure_reopens_with_a_new_cool_down() {
    let f = Fixture::half_open(BreakerConfig::default());
    f.advance(5_000);
    f.breaker.try_acquire().expect("probe").failure();
    assert_eq!(f.breaker.state(), BreakerState::Open);
    assert_eq!(f.gauge.get(), 1);
    f.advance(9_999);
    assert!(f.breaker.try_acquire().is_none());
    f.advance(1);
    assert!(f.breaker.try_acquire().is_some());
}

#[test]
fn dropped_probe_frees_its_slot_and_changes_nothing() {
    let f = Fixture::half_open(BreakerConfig::default());
    let probe = f.breaker.try_acquire().expect("probe");
    assert!(f.breaker.try_acquire().is_none());
    drop(probe);
    assert_eq!(f.breaker.state(), BreakerState::HalfOpen);
    assert!(f.breaker.try_acquire().is_some());
}

#[test]
fn results_of_permits_from_before_a_transition_are_ignored() {
    let f = Fixture::new(only_consecutive(3));
    let slow = f.breaker.try_acquire().expect("closed");
    f.results("fff");
    f.advance(10_000);
    assert_eq!(f.breaker.state(), BreakerState::HalfOpen);
    slow.success(); // started before the outage was noticed: proves nothing
    assert_eq!(f.breaker.state(), BreakerState::HalfOpen);
}

#[test]
fn config_defaults_and_unknown_fields() {
    let config: BreakerConfig = serde_json::from_str(r#"{"open_ms": 500}"#).unwrap();
    assert_eq!((config.open_ms, config.consecutive_failures), (500, 5));
    assert!(serde_json::from_str::<BreakerConfig>(r#"{"open_msec": 1}"#).is_err());
}

#[test]
fn concurrent_callers_never_get_more_probes_than_allowed() {
    fn assert_send_sync<T: Send + Sync + Clone>() {}
    assert_send_sync::<Breaker>();
    let f = Fixture::half_open(BreakerConfig {
        half_open_probes: 3,
        ..Default::default()
    });
    let barrier = std::sync::Barrier::new(8);
    let granted: usize = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..8)
            .map(|_| {
                scope.spawn(|| {
                    let permit = f.breaker.try_acquire();
                    barrier.wait(); // hold the probes until everyone asked
                    usize::from(permit.is_some())
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).sum()
    });
    assert_eq!(granted, 3);
    assert_eq!(f.breaker.state(), BreakerState::HalfOpen);
}
