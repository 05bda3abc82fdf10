//! Rate limits, concurrency limits and spend budgets for one LLM request,
//! checked and reserved **all or nothing**, either in Redis (one Lua script,
//! exact across any number of replicas sharing the Redis) or in memory (one
//! replica, or the fallback while Redis is down). Both stores implement the
//! same semantics, described here; the Lua scripts (`src/acquire.lua`,
//! `src/settle.lua`, `src/floor.lua`) mirror `src/gcra.rs`, `src/calendar.rs` and
//! `src/memory.rs` operation by operation.
//!
//! # Model
//!
//! A request ([`Acquire`]) names the [`Bucket`]s it counts against (its API
//! key, its tenant, its key × model...), each with its own [`Limits`], plus
//! the tokens and cost it reserves (estimates). Every limit of every bucket is
//! checked first; only if all pass are all of them reserved. A denied request
//! changes nothing. [`Decision::denied`] names the first limit that said no,
//! in bucket order and, within a bucket, in the order of [`Kind`].
//!
//! When the request ends, [`Settle`] replaces the estimates by the actual
//! amounts and releases the concurrency slot.
//!
//! # Requests and tokens per minute: GCRA
//!
//! Each bucket keeps one "theoretical arrival time" (TAT). With the period
//! `P` = 60 s, limit `L`, emission interval `T = P / L` and tolerance `P`
//! (so a burst of up to `L` passes at once), a request of cost `c` (1 for
//! requests/min, [`Acquire::tokens`] for tokens/min) computes
//! `new_tat = max(tat, now) + c·T` and passes iff `new_tat − now ≤ P`; if it
//! passes, `new_tat` is stored.
//!
//! - [`Window::remaining`] = `floor((P − (new_tat − now)) / T)`, never
//!   negative; [`Window::reset_ms`] = `ceil((new_tat − now) / 1 ms)`, the time
//!   until the bucket is full again.
//! - When denied, `retry_after = max(tat, now) + c·T − now − P`, rounded up
//!   to whole milliseconds (at least 1).
//! - A cost above the whole limit (`c > L`), or a limit of 0, can never pass:
//!   it is denied with `retry_after` = `P` (60 000 ms).
//!
//! Times are microseconds. `T` is fractional, so the TAT is kept as whole
//! microseconds plus a fraction in `[0, 1)`: all arithmetic happens on
//! differences from `now` (below 2^27 µs), where doubles are precise to
//! ~1e-8 µs, instead of on absolute times (~2^51 µs, where a double only
//! resolves 0.25 µs: a plain double TAT admits 96 of a limit of 97). The
//! comparison tolerates 1 ns of float error (in the check, and in
//! remaining, reset and retry-after alike, so they agree with it): a burst of
//! exactly `L` always passes and `L + 1` never does.
//!
//! # Tokens per day and monthly budget: calendar windows (UTC)
//!
//! One counter per bucket per UTC day (`floor(now / 86 400 s)`) or UTC
//! calendar month. A request of cost `c` ([`Acquire::tokens`] or
//! [`Acquire::cost_nano_usd`]) passes iff `used + c ≤ limit` (a limit of 0
//! denies everything); `retry_after` is the time until the next day or month
//! starts (also when `c > limit`: that request never fits, but the window is
//! the honest answer). No [`Window`] is reported for these. Amounts are exact
//! up to 2^53 (9 007 199 254 740 992 nano-USD ≈ 9 M USD).
//!
//! # Concurrency: leases
//!
//! A set of lease ids ([`Acquire::lease_id`]) with their expiry
//! (`now + lease_ttl_ms`). Acquire ignores expired leases, denies if the live
//! ones reach the limit, else adds this lease. `retry_after` is the time until
//! the earliest lease expires, clamped to 1..=1000 ms: a settle usually frees
//! a slot much sooner than the lease expiry, so the client should retry soon.
//! A lease not released by a settle is freed when it expires.
//!
//! # Settle
//!
//! - Tokens/min: the TAT moves by `(actual − reserved)·T`; a refund never
//!   moves it below `now`.
//! - Tokens/day and budget: the counter of the window *current at settle
//!   time* gets `actual − reserved` (never below 0). A refund in a new window
//!   is dropped (the old window's counter no longer matters).
//! - Concurrency: the lease is removed.
//! - Requests/min is not refunded: the request happened.
//!
//! Settling twice must not adjust twice: the first settle of a lease stores a
//! "settled" marker (Redis: `SET … NX PX`) that lives for the store's
//! settled-marker TTL (default 2 minutes, [`MemoryStore::with_settled_ttl`],
//! [`RedisStore::with_settled_ttl`]); a later settle only removes the lease
//! again (harmless). The marker is written by the first settle, however
//! long the request ran, and a second settle is a redelivery, which follows
//! within seconds; every marker is kept for the whole TTL, so at thousands
//! of settles a second a longer one costs real memory (10 minutes at 5,000 a
//! second: three million markers).
//! Settling a lease that was never acquired, or has expired, is harmless:
//! adjustments are clamped as above. Only settle requests that were allowed.
//!
//! # Budget floors
//!
//! A budget counter can be rebuilt from outside (the usage ledger's
//! month-to-date spend, after Redis lost its counters): [`BudgetFloor`] sets
//! the budget counter of its [`FloorScope`] — the tenant's own (bucket
//! [`Scope::Tenant`], id = the tenant) or one of its keys' (bucket
//! [`Scope::Key`], id = the key id) — of the current month to
//! `max(used, floor)`. It never lowers a counter, which also holds
//! reservations the ledger does not know yet. A
//! counter of an older month, or none, starts the current month at the
//! floor (same expiry as any budget counter). A floor for a month that is
//! not the current one (the month turned since the figure was computed)
//! changes nothing: [`FloorOutcome::OtherMonth`].
//!
//! # Time
//!
//! Redis uses its own clock (`TIME` inside the script), never a replica's,
//! so replicas with skewed clocks still agree. The memory store uses the
//! injected [`Clock`].
//!
//! # Redis keys
//!
//! `{prefix}:{<tenant>}:<scope>:<id>:<kind>` with kind `rpm`, `tpm`, `tpd`,
//! `conc` or `budget`, and `{prefix}:{<tenant>}:settled:<lease_id>`. The
//! `{tenant}` hash tag puts all keys of one request in one Redis Cluster slot,
//! so one script can touch them all. Every key expires:
//!
//! - `rpm`, `tpm`: string `"<tat whole µs> <fraction>"`, expiring 60 s after
//!   the TAT;
//! - `tpd`, `budget`: hash `{w: window id, n: used}` (window id = day number
//!   or `year·12 + month − 1`), expiring 1 h after the window ends. The window
//!   is a hash field rather than a key suffix so that every key the script
//!   touches is declared in `KEYS`, although the window comes from Redis time;
//! - `conc`: sorted set lease id → expiry (µs), expiring with its
//!   longest-lived lease;
//! - `settled`: the settled-marker TTL.
//!
//! Ids are used as given (they come from configuration, not from clients).
//!
//! Each [`RedisStore::acquire`], [`RedisStore::settle`] and
//! [`RedisStore::raise_budget_floor`] is exactly one round trip (`EVALSHA`; only after a Redis restart or `SCRIPT FLUSH` does
//! the first call add `SCRIPT LOAD` and a retry). A request without any limit
//! makes no round trip at all.

mod calendar;
mod clock;
mod gcra;
#[cfg(test)]
mod lua_tests;
mod memory;
mod plan;
mod redis_connection;
mod redis_store;

pub use clock::{Clock, SystemClock};
/// The month of a [`BudgetFloor`] (`Month::parse("2026-11")`).
pub use llmgw_calendar::Month;
pub use memory::MemoryStore;
pub use redis_connection::{ConnectionBounds, RedisConnection, RedisTarget};
pub use redis_store::RedisStore;

/// How long a "settled" marker lives unless the store is told otherwise.
pub const DEFAULT_SETTLED_TTL_MS: u64 = 120_000;

/// The limits of one bucket; `None` means unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub requests_per_minute: Option<u64>,
    pub tokens_per_minute: Option<u64>,
    /// UTC calendar day.
    pub tokens_per_day: Option<u64>,
    /// Requests in flight.
    pub concurrent: Option<u64>,
    /// UTC calendar month; 1 nano-USD = 1e-9 USD.
    pub monthly_budget_nano_usd: Option<u64>,
}

impl Limits {
    pub fn is_empty(&self) -> bool {
        Kind::ALL.iter().all(|kind| self.get(*kind).is_none())
    }

    /// The limit of one kind.
    pub fn get(&self, kind: Kind) -> Option<u64> {
        match kind {
            Kind::RequestsPerMinute => self.requests_per_minute,
            Kind::TokensPerMinute => self.tokens_per_minute,
            Kind::TokensPerDay => self.tokens_per_day,
            Kind::Concurrent => self.concurrent,
            Kind::MonthlyBudget => self.monthly_budget_nano_usd,
        }
    }
}

/// What a bucket belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    Key,
    Tenant,
    KeyModel,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Key => "key",
            Scope::Tenant => "tenant",
            Scope::KeyModel => "key_model",
        }
    }
}

/// One set of limits a request counts against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    pub scope: Scope,
    /// The key id, the tenant, or `"key_id/model"`.
    pub id: String,
    pub limits: Limits,
}

/// Check and reserve every limit of one request.
#[derive(Debug, Clone)]
pub struct Acquire {
    /// All Redis keys of one request share the hash tag `{tenant}`, so the
    /// script runs on Redis Cluster.
    pub tenant: String,
    /// Unique per request (the request id).
    pub lease_id: String,
    pub buckets: Vec<Bucket>,
    /// Reserved tokens (estimate).
    pub tokens: u64,
    /// Reserved cost (estimate).
    pub cost_nano_usd: u64,
    /// A concurrency slot not released by settle is freed after this.
    pub lease_ttl_ms: u64,
}

/// The kinds of limit, in the order they are checked within a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    RequestsPerMinute,
    TokensPerMinute,
    TokensPerDay,
    Concurrent,
    MonthlyBudget,
}

impl Kind {
    /// Check order.
    pub const ALL: [Kind; 5] = [
        Kind::RequestsPerMinute,
        Kind::TokensPerMinute,
        Kind::TokensPerDay,
        Kind::Concurrent,
        Kind::MonthlyBudget,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::RequestsPerMinute => "requests_per_minute",
            Kind::TokensPerMinute => "tokens_per_minute",
            Kind::TokensPerDay => "tokens_per_day",
            Kind::Concurrent => "concurrent",
            Kind::MonthlyBudget => "monthly_budget",
        }
    }
}

/// The state of one per-minute limit, for `x-ratelimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub limit: u64,
    pub remaining: u64,
    /// Time until the bucket is full again.
    pub reset_ms: u64,
}

/// The answer to an [`Acquire`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// The first limit that said no (buckets in order, kinds in [`Kind`] order).
    pub denied: Option<(Scope, Kind)>,
    /// When denied: the earliest time a retry of the same request can pass
    /// that limit (>= 1). 0 when allowed.
    pub retry_after_ms: u64,
    /// The bucket with the least remaining requests/min (after this request
    /// if allowed); `None` if no bucket has a requests/min limit.
    pub requests: Option<Window>,
    /// The same for tokens/min.
    pub tokens: Option<Window>,
}

impl Decision {
    /// What a request without any limit gets.
    pub(crate) fn unlimited() -> Self {
        Decision {
            allowed: true,
            denied: None,
            retry_after_ms: 0,
            requests: None,
            tokens: None,
        }
    }
}

/// Replace a request's reservation by what it actually used, and release its
/// concurrency slot.
#[derive(Debug, Clone)]
pub struct Settle {
    pub tenant: String,
    pub lease_id: String,
    pub buckets: Vec<Bucket>,
    pub reserved_tokens: u64,
    pub actual_tokens: u64,
    pub reserved_cost_nano_usd: u64,
    pub actual_cost_nano_usd: u64,
}

impl Settle {
    /// Hands back everything `acquire` reserved (its tokens, its cost, its
    /// concurrency slot), as for a request that used nothing. Its request
    /// stays counted in requests/min, which is never refunded.
    pub fn unused(acquire: &Acquire) -> Settle {
        Settle {
            tenant: acquire.tenant.clone(),
            lease_id: acquire.lease_id.clone(),
            buckets: acquire.buckets.clone(),
            reserved_tokens: acquire.tokens,
            actual_tokens: 0,
            reserved_cost_nano_usd: acquire.cost_nano_usd,
            actual_cost_nano_usd: 0,
        }
    }
}

/// Raise a monthly budget counter (a tenant's, or one of its keys') to at
/// least what was spent in `month` (see "Budget floors" above).
#[derive(Debug, Clone)]
pub struct BudgetFloor {
    /// The tenant, which is also the Redis hash tag of the counter.
    pub tenant: String,
    /// Which of the tenant's budget counters.
    pub scope: FloorScope,
    /// The month the figure is for: nothing happens unless it is the
    /// store's current month.
    pub month: Month,
    pub spent_nano_usd: u64,
}

impl BudgetFloor {
    /// The month's window id in budget counters (`year·12 + month − 1`).
    pub(crate) fn month_id(&self) -> u64 {
        let start_ms = u64::try_from(self.month.first_day().start_ms()).unwrap_or(0);
        calendar::month(start_ms.saturating_mul(1000)).id
    }
}

/// The budget counter a [`BudgetFloor`] raises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FloorScope {
    /// The tenant's own: bucket [`Scope::Tenant`], id = the tenant.
    Tenant,
    /// One of the tenant's keys: bucket [`Scope::Key`], id = this key id.
    Key(String),
}

/// What a [`BudgetFloor`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloorOutcome {
    /// The counter was below the floor (or of an older month, or missing)
    /// and now holds the floor.
    Raised,
    /// The counter already held at least the floor.
    Unchanged,
    /// The floor's month is not the current one: nothing changed.
    OtherMonth,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("{0}")]
    Invalid(String),
}

/// Either store behind one type, for callers (and tests) that pick at run time.
#[derive(Clone)]
pub enum Store {
    Memory(MemoryStore),
    Redis(RedisStore),
}

impl Store {
    pub async fn acquire(&self, request: &Acquire) -> Result<Decision, StoreError> {
        match self {
            Store::Memory(store) => Ok(store.acquire(request)),
            Store::Redis(store) => store.acquire(request).await,
        }
    }

    pub async fn settle(&self, settle: &Settle) -> Result<(), StoreError> {
        match self {
            Store::Memory(store) => {
                store.settle(settle);
                Ok(())
            }
            Store::Redis(store) => store.settle(settle).await,
        }
    }

    pub async fn raise_budget_floor(
        &self,
        floor: &BudgetFloor,
    ) -> Result<FloorOutcome, StoreError> {
        match self {
            Store::Memory(store) => Ok(store.raise_budget_floor(floor)),
            Store::Redis(store) => store.raise_budget_floor(floor).await,
        }
    }
}
