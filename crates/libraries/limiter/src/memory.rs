//! The in-memory store: the same algorithms as the Lua scripts, on maps
//! behind one mutex (each acquire, settle or floor holds it for a few map
//! operations, which makes them atomic like a script in Redis).

mod settled;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::calendar::{self, CalWindow};
use crate::gcra::{self, Tat};
use crate::plan::{self, RawWindow, Spec, StoreAnswer};
use crate::{
    Acquire, BudgetFloor, Clock, DEFAULT_SETTLED_TTL_MS, Decision, FloorOutcome, Kind, Settle,
    SystemClock,
};
use settled::SettledMarkers;

/// Keys are built like the Redis ones (so both stores share `plan`); this
/// stands in for the Redis prefix.
const PREFIX: &str = "mem";
/// Calendar counters are kept this long after their window ends (as in Redis).
const CALENDAR_MARGIN_US: u64 = 3_600_000_000;
/// Expired entries are swept every this many operations, so memory stays
/// bounded by the live buckets without a background task.
const SWEEP_EVERY: u64 = 1024;

/// Limits held in this process: one replica, or the fallback while Redis
/// is down. Cheap to clone (shared state).
#[derive(Clone)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
    clock: Arc<dyn Clock>,
}

struct State {
    tats: HashMap<String, Tat>,
    counters: HashMap<String, Counter>,
    /// Concurrency key → lease id → expiry (µs).
    leases: HashMap<String, HashMap<String, u64>>,
    settled: SettledMarkers,
    ops: u64,
}

impl State {
    fn new(settled_ttl_us: u64) -> Self {
        State {
            tats: HashMap::new(),
            counters: HashMap::new(),
            leases: HashMap::new(),
            settled: SettledMarkers::new(settled_ttl_us),
            ops: 0,
        }
    }
}

/// A calendar counter: which window it counts, how much is used.
struct Counter {
    window: u64,
    used: u64,
    expires_us: u64,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::with_clock(Arc::new(SystemClock))
    }

    pub fn with_clock(clock: Arc<dyn Clock>) -> Self {
        MemoryStore {
            state: Arc::new(Mutex::new(State::new(DEFAULT_SETTLED_TTL_MS * 1000))),
            clock,
        }
    }

    /// How long a settled lease is remembered (a second settle within it is
    /// ignored). Default [`DEFAULT_SETTLED_TTL_MS`]. A builder: the store
    /// it returns starts empty (clones of `self` keep the old state).
    pub fn with_settled_ttl(self, ttl: Duration) -> Self {
        let ttl_us = u64::try_from(ttl.as_micros()).unwrap_or(u64::MAX).max(1000);
        MemoryStore {
            state: Arc::new(Mutex::new(State::new(ttl_us))),
            clock: self.clock,
        }
    }

    pub fn acquire(&self, request: &Acquire) -> Decision {
        let specs = plan::specs(PREFIX, &request.tenant, &request.buckets, |_| true);
        if specs.is_empty() {
            return Decision::unlimited();
        }
        let now = self.clock.now_micros();
        let mut state = self.lock();
        state.maybe_sweep(now);

        let mut outcome = StoreAnswer::default();
        for (index, spec) in specs.iter().enumerate() {
            if let Err(retry) = state.check(spec, request, now) {
                outcome.denied = Some((index, retry));
                break;
            }
        }
        let allowed = outcome.denied.is_none();
        for (index, spec) in specs.iter().enumerate() {
            let delay = if allowed {
                state.apply(spec, request, now)
            } else if is_per_minute(spec.kind) {
                Some(gcra::delay(state.tats.get(&spec.key).copied(), now))
            } else {
                None
            };
            if let Some(delay) = delay {
                outcome.offer(
                    spec.kind,
                    RawWindow {
                        spec: index,
                        remaining: gcra::remaining(delay, spec.limit),
                        reset_ms: gcra::reset_ms(delay),
                    },
                );
            }
        }
        drop(state);
        // Indexes come from `specs` itself, so this cannot fail; answering
        // "allowed" if it ever did matches the fail-open fallback role.
        outcome
            .into_decision(&specs, &request.buckets)
            .unwrap_or_else(Decision::unlimited)
    }

    pub fn settle(&self, settle: &Settle) {
        let specs = plan::specs(PREFIX, &settle.tenant, &settle.buckets, plan::settled_kind);
        if specs.is_empty() {
            return;
        }
        let now = self.clock.now_micros();
        let marker = plan::settled_key(PREFIX, &settle.tenant, &settle.lease_id);
        let mut state = self.lock();
        state.maybe_sweep(now);
        let fresh = state.settled.mark(&marker, now);
        let tokens = i128::from(settle.actual_tokens) - i128::from(settle.reserved_tokens);
        let cost =
            i128::from(settle.actual_cost_nano_usd) - i128::from(settle.reserved_cost_nano_usd);
        for spec in &specs {
            match spec.kind {
                Kind::Concurrent => state.release(&spec.key, &settle.lease_id),
                _ if !fresh => {}
                Kind::TokensPerMinute => state.correct_tat(spec, tokens, now),
                Kind::TokensPerDay => state.correct_counter(spec, tokens, now),
                Kind::MonthlyBudget => state.correct_counter(spec, cost, now),
                Kind::RequestsPerMinute => {}
            }
        }
    }

    /// Raises the budget counter of the floor's scope (the tenant's or one
    /// of its keys') of the current month to at least the floor; never
    /// lowers it.
    pub fn raise_budget_floor(&self, floor: &BudgetFloor) -> FloorOutcome {
        let now = self.clock.now_micros();
        let window = calendar::month(now);
        if window.id != floor.month_id() {
            return FloorOutcome::OtherMonth;
        }
        let key = plan::floor_budget_key(PREFIX, floor);
        let mut state = self.lock();
        state.maybe_sweep(now);
        // An older month's counter (or none) counts as 0 in this month.
        if state.used(&key, window.id) >= floor.spent_nano_usd {
            return FloorOutcome::Unchanged;
        }
        let counter = Counter {
            window: window.id,
            used: floor.spent_nano_usd,
            expires_us: window.end_us + CALENDAR_MARGIN_US,
        };
        state.counters.insert(key, counter);
        FloorOutcome::Raised
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves the maps consistent (each
        // operation is a single insert/remove), so keep going.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn is_per_minute(kind: Kind) -> bool {
    matches!(kind, Kind::RequestsPerMinute | Kind::TokensPerMinute)
}

/// What a request costs against a limit of `kind`.
fn cost(kind: Kind, request: &Acquire) -> u64 {
    match kind {
        Kind::RequestsPerMinute => 1,
        Kind::TokensPerMinute | Kind::TokensPerDay => request.tokens,
        Kind::MonthlyBudget => request.cost_nano_usd,
        Kind::Concurrent => 0,
    }
}

fn window(kind: Kind, now: u64) -> CalWindow {
    if kind == Kind::TokensPerDay {
        calendar::day(now)
    } else {
        calendar::month(now)
    }
}

impl State {
    /// `Err(retry_after_ms)` if the request does not fit this limit now.
    fn check(&self, spec: &Spec, request: &Acquire, now: u64) -> Result<(), u64> {
        let cost = cost(spec.kind, request);
        match spec.kind {
            Kind::RequestsPerMinute | Kind::TokensPerMinute => {
                let delay = gcra::delay(self.tats.get(&spec.key).copied(), now);
                gcra::check(delay, cost, spec.limit).map(|_| ())
            }
            Kind::Concurrent => {
                let live = self
                    .leases
                    .get(&spec.key)
                    .into_iter()
                    .flat_map(|set| set.values().copied().filter(|&expiry| expiry > now));
                let (count, earliest) = live.fold((0u64, None::<u64>), |(n, min), e| {
                    (n + 1, Some(min.map_or(e, |m| m.min(e))))
                });
                if count < spec.limit {
                    return Ok(());
                }
                let retry = earliest.map_or(1000, |e| gcra::ceil_ms((e - now) as f64));
                Err(retry.clamp(1, 1000))
            }
            Kind::TokensPerDay | Kind::MonthlyBudget => {
                let window = window(spec.kind, now);
                let used = self.used(&spec.key, window.id);
                if spec.limit > 0 && used.saturating_add(cost) <= spec.limit {
                    Ok(())
                } else {
                    Err(gcra::ceil_ms((window.end_us - now) as f64).max(1))
                }
            }
        }
    }

    /// Reserves the request against this limit (already checked); returns
    /// the new delay of per-minute limits.
    fn apply(&mut self, spec: &Spec, request: &Acquire, now: u64) -> Option<f64> {
        let cost = cost(spec.kind, request);
        match spec.kind {
            Kind::RequestsPerMinute | Kind::TokensPerMinute => {
                let delay = gcra::delay(self.tats.get(&spec.key).copied(), now)
                    + gcra::increment(cost as f64, spec.limit);
                self.tats.insert(spec.key.clone(), Tat::after(now, delay));
                Some(delay)
            }
            Kind::Concurrent => {
                let ttl_us = request.lease_ttl_ms.max(1).saturating_mul(1000);
                let set = self.leases.entry(spec.key.clone()).or_default();
                set.retain(|_, expiry| *expiry > now);
                set.insert(request.lease_id.clone(), now.saturating_add(ttl_us));
                None
            }
            Kind::TokensPerDay | Kind::MonthlyBudget => {
                let window = window(spec.kind, now);
                let counter = self.counters.entry(spec.key.clone()).or_insert(Counter {
                    window: window.id,
                    used: 0,
                    expires_us: 0,
                });
                if counter.window != window.id {
                    counter.window = window.id;
                    counter.used = 0;
                }
                counter.used = counter.used.saturating_add(cost);
                counter.expires_us = window.end_us + CALENDAR_MARGIN_US;
                None
            }
        }
    }

    /// Used amount of a calendar counter in the given window.
    fn used(&self, key: &str, window: u64) -> u64 {
        match self.counters.get(key) {
            Some(counter) if counter.window == window => counter.used,
            _ => 0,
        }
    }

    fn release(&mut self, key: &str, lease_id: &str) {
        if let Some(set) = self.leases.get_mut(key) {
            set.remove(lease_id);
            if set.is_empty() {
                self.leases.remove(key);
            }
        }
    }

    /// Moves a tokens/min TAT by `delta` tokens, never below now.
    fn correct_tat(&mut self, spec: &Spec, delta: i128, now: u64) {
        if delta == 0 || spec.limit == 0 {
            return;
        }
        let delay = gcra::delay(self.tats.get(&spec.key).copied(), now)
            + gcra::increment(delta as f64, spec.limit);
        if delay > 0.0 {
            self.tats.insert(spec.key.clone(), Tat::after(now, delay));
        } else {
            // A TAT at or before now is the same as no TAT.
            self.tats.remove(&spec.key);
        }
    }

    /// Adds `delta` to the current window's counter, never below 0.
    fn correct_counter(&mut self, spec: &Spec, delta: i128, now: u64) {
        if delta == 0 {
            return;
        }
        let window = window(spec.kind, now);
        match self.counters.get_mut(&spec.key) {
            Some(counter) if counter.window == window.id => {
                let used = (i128::from(counter.used) + delta).max(0);
                counter.used = u64::try_from(used).unwrap_or(u64::MAX);
            }
            // A refund into a window that has nothing is dropped.
            _ if delta < 0 => {}
            _ => {
                self.counters.insert(
                    spec.key.clone(),
                    Counter {
                        window: window.id,
                        used: u64::try_from(delta).unwrap_or(u64::MAX),
                        expires_us: window.end_us + CALENDAR_MARGIN_US,
                    },
                );
            }
        }
    }

    fn maybe_sweep(&mut self, now: u64) {
        self.ops += 1;
        if !self.ops.is_multiple_of(SWEEP_EVERY) {
            return;
        }
        // A TAT more than a period in the past is the same as none.
        let period_us = gcra::PERIOD_US as u64;
        self.tats
            .retain(|_, tat| tat.whole.saturating_add(period_us) > now);
        self.counters.retain(|_, counter| counter.expires_us > now);
        self.leases.retain(|_, set| {
            set.retain(|_, expiry| *expiry > now);
            !set.is_empty()
        });
    }
}
