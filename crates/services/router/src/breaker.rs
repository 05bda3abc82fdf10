//! A circuit breaker per deployment: stop sending requests to an upstream
//! that keeps failing (clients fail over at once instead of waiting for
//! timeouts), then after a cool-down let a few probes through to find out
//! whether it has recovered.
//!
//! One `Mutex` guards the state: held for a few instructions per call and
//! never across an await, it is uncontended in practice, and far simpler to
//! get right than a lock-free state machine.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use prometheus_client::metrics::gauge::Gauge;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerConfig {
    /// Open after this many failures in a row (0 disables this trigger).
    pub consecutive_failures: u32,
    /// Or open when failures / results in the window reach this ...
    pub failure_rate: f64,
    /// ... and the window holds at least this many results (a rate over a
    /// handful of requests is noise).
    pub min_requests: u32,
    /// Rolling window for the rate, kept as ten buckets of a tenth each, so
    /// the rate covers the last 90-100 % of this span.
    pub window_secs: u64,
    /// Cool-down while open, before probes are let through.
    pub open_ms: u64,
    /// Probes allowed at once while half-open. 0 counts as 1: without a
    /// probe the breaker could never close again.
    pub half_open_probes: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            consecutive_failures: 5,
            failure_rate: 0.5,
            min_requests: 20,
            window_secs: 30,
            open_ms: 10_000,
            half_open_probes: 1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

/// Where "now" comes from: the real clock in production, a hand-advanced one
/// in tests (cool-downs of seconds must not make tests slow or flaky).
type Clock = Arc<dyn Fn() -> Instant + Send + Sync>;

/// Shared by concurrent requests; cloning is cheap (one `Arc`).
#[derive(Clone)]
pub struct Breaker {
    shared: Arc<Shared>,
}

struct Shared {
    name: String,
    config: BreakerConfig,
    gauge: Gauge,
    clock: Clock,
    inner: Mutex<Inner>,
}

struct Inner {
    state: BreakerState,
    /// Bumped on every transition. A permit remembers the generation it was
    /// granted in; a result from an older one describes a deployment state
    /// already acted on and is ignored (a slow request started before the
    /// breaker opened must not close or re-open it later).
    generation: u64,
    consecutive: u32,
    opened_at: Instant,
    /// Probe permits outstanding while half-open.
    probes: u32,
    window: Window,
}

/// What a breaker permit reports when it is used up.
#[derive(Clone, Copy)]
enum PermitReport {
    Success,
    Failure,
    /// Dropped without a result (client cancelled): says nothing about the
    /// deployment, but gives back a probe slot.
    Cancelled,
}

impl Breaker {
    /// `state_gauge` is set to 0 closed, 1 open, 2 half-open.
    pub fn new(name: impl Into<String>, config: BreakerConfig, state_gauge: Gauge) -> Breaker {
        Breaker::with_clock(name, config, state_gauge, Arc::new(Instant::now))
    }

    fn with_clock(
        name: impl Into<String>,
        config: BreakerConfig,
        gauge: Gauge,
        clock: Clock,
    ) -> Breaker {
        let now = clock();
        gauge.set(0);
        let window = Window::new(now, config.window_secs);
        let inner = Inner {
            state: BreakerState::Closed,
            generation: 0,
            consecutive: 0,
            opened_at: now,
            probes: 0,
            window,
        };
        let inner = Mutex::new(inner);
        Breaker {
            shared: Arc::new(Shared {
                name: name.into(),
                config,
                gauge,
                clock,
                inner,
            }),
        }
    }

    /// Permission to call the deployment; `None` while open (or half-open
    /// with all probe slots taken). Report the result on the permit.
    #[must_use]
    pub fn try_acquire(&self) -> Option<Permit> {
        let mut inner = self.shared.current();
        let granted = match inner.state {
            BreakerState::Closed => true,
            BreakerState::Open => false,
            BreakerState::HalfOpen => {
                let free = inner.probes < self.shared.config.half_open_probes.max(1);
                inner.probes += u32::from(free);
                free
            }
        };
        let generation = inner.generation;
        drop(inner);
        // `then`, not `then_some`: a refused permit must never exist, or its
        // drop would give back a probe slot it never took.
        granted.then(|| Permit {
            shared: Arc::clone(&self.shared),
            generation,
            resolved: false,
        })
    }

    /// The state as of now: an open breaker whose cool-down has passed
    /// reports (and becomes) half-open, as `try_acquire` would find it.
    // Routing only needs `try_acquire`; tests read the state.
    #[cfg(test)]
    pub fn state(&self) -> BreakerState {
        self.shared.current().state
    }
}

impl std::fmt::Debug for Breaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.shared.lock().state;
        f.debug_struct("Breaker")
            .field("name", &self.shared.name)
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every update is a plain field write, so a panic elsewhere while
        // holding the lock leaves consistent counters: keep going.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The locked state, Open -> HalfOpen once the cool-down has passed:
    /// checked lazily, so an idle breaker needs no timer task.
    fn current(&self) -> MutexGuard<'_, Inner> {
        let mut inner = self.lock();
        // The clock is read only when open: the closed path stays cheap.
        if inner.state == BreakerState::Open {
            let now = (self.clock)();
            let cool_down = Duration::from_millis(self.config.open_ms);
            if now.saturating_duration_since(inner.opened_at) >= cool_down {
                self.transition(&mut inner, BreakerState::HalfOpen, now);
            }
        }
        inner
    }

    fn transition(&self, inner: &mut Inner, to: BreakerState, now: Instant) {
        let from = std::mem::replace(&mut inner.state, to);
        inner.generation += 1;
        inner.probes = 0;
        inner.consecutive = 0;
        match to {
            BreakerState::Open => inner.opened_at = now,
            // A recovered deployment starts with a clean slate, not with the
            // failures that opened it.
            BreakerState::Closed => inner.window.reset(),
            BreakerState::HalfOpen => {}
        }
        // Gauge and log under the lock, so they are never out of order with
        // the state; transitions are rare, the cost does not matter.
        let (name, gauge) = (&self.name, &self.gauge);
        match to {
            BreakerState::Closed => gauge.set(0),
            BreakerState::Open => gauge.set(1),
            BreakerState::HalfOpen => gauge.set(2),
        };
        if to == BreakerState::Closed {
            tracing::info!(deployment = %name, ?from, ?to, "circuit breaker state changed");
        } else {
            tracing::warn!(deployment = %name, ?from, ?to, "circuit breaker state changed");
        }
    }

    fn resolve(&self, generation: u64, outcome: PermitReport) {
        let now = (self.clock)();
        let mut inner = self.lock();
        if inner.generation != generation {
            return;
        }
        // Within one generation the state tells what kind of permit this is:
        // none is granted while open, only probes while half-open.
        match (inner.state, outcome) {
            (_, PermitReport::Cancelled) => inner.probes = inner.probes.saturating_sub(1),
            (BreakerState::Closed, PermitReport::Success) => {
                inner.consecutive = 0;
                inner.window.record(now, false);
            }
            (BreakerState::Closed, PermitReport::Failure) => {
                inner.consecutive = inner.consecutive.saturating_add(1);
                inner.window.record(now, true);
                if self.should_open(&inner, now) {
                    self.transition(&mut inner, BreakerState::Open, now);
                }
            }
            (BreakerState::HalfOpen, PermitReport::Success) => {
                self.transition(&mut inner, BreakerState::Closed, now)
            }
            (BreakerState::HalfOpen, PermitReport::Failure) => {
                self.transition(&mut inner, BreakerState::Open, now)
            }
            (BreakerState::Open, _) => {}
        }
    }

    fn should_open(&self, inner: &Inner, now: Instant) -> bool {
        let config = &self.config;
        let (requests, failures) = inner.window.totals(now);
        (config.consecutive_failures > 0 && inner.consecutive >= config.consecutive_failures)
            || (requests > 0
                && requests >= config.min_requests
                && f64::from(failures) / f64::from(requests) >= config.failure_rate)
    }
}

/// Permission for one call. Report `success()` or `failure()`; dropping it
/// without either (the client went away) counts as neither.
#[must_use = "report the call's result with success() or failure()"]
pub struct Permit {
    shared: Arc<Shared>,
    generation: u64,
    resolved: bool,
}

impl Permit {
    pub fn success(mut self) {
        self.finish(PermitReport::Success);
    }

    pub fn failure(mut self) {
        self.finish(PermitReport::Failure);
    }

    fn finish(&mut self, outcome: PermitReport) {
        if !std::mem::replace(&mut self.resolved, true) {
            self.shared.resolve(self.generation, outcome);
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.finish(PermitReport::Cancelled);
    }
}

const BUCKETS: u64 = 10;

/// Results over the last `window_secs` as a ring of (bucket number since
/// `start`, requests, failures): constant memory and O(1) to record.
struct Window {
    start: Instant,
    bucket_ms: u64,
    buckets: [(u64, u32, u32); BUCKETS as usize],
}

impl Window {
    fn new(start: Instant, window_secs: u64) -> Window {
        let bucket_ms = (window_secs.saturating_mul(1000) / BUCKETS).max(1);
        Window {
            start,
            bucket_ms,
            buckets: [(0, 0, 0); BUCKETS as usize],
        }
    }

    fn bucket_number(&self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.start).as_millis();
        u64::try_from(elapsed).unwrap_or(u64::MAX) / self.bucket_ms
    }

    fn record(&mut self, now: Instant, failed: bool) {
        let number = self.bucket_number(now);
        let bucket = &mut self.buckets[(number % BUCKETS) as usize];
        if bucket.0 != number {
            *bucket = (number, 0, 0);
        }
        bucket.1 = bucket.1.saturating_add(1);
        bucket.2 = bucket.2.saturating_add(u32::from(failed));
    }

    /// (requests, failures) in the buckets still inside the window.
    fn totals(&self, now: Instant) -> (u32, u32) {
        let current = self.bucket_number(now);
        // saturating_sub: a caller that read the clock just before another
        // one recorded may see a bucket from its future.
        let live = self
            .buckets
            .iter()
            .filter(|b| current.saturating_sub(b.0) < BUCKETS);
        live.fold((0u32, 0u32), |(r, f), b| {
            (r.saturating_add(b.1), f.saturating_add(b.2))
        })
    }

    fn reset(&mut self) {
        self.buckets = [(0, 0, 0); BUCKETS as usize];
    }
}

#[cfg(test)]
mod tests;
