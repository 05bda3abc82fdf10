//! Helpers shared by the integration tests.
#![allow(clippy::unwrap_used, dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use llmgw_limiter::{
    Acquire, Bucket, Clock, Limits, MemoryStore, RedisStore, Scope, Settle, Store,
};
use redis::aio::ConnectionManager;

pub const REDIS_URL: &str = "redis://127.0.0.1:6379";

/// A clock the test moves by hand.
pub struct FakeClock(AtomicU64);

impl FakeClock {
    pub fn advance_ms(&self, ms: u64) {
        self.advance_us(ms * 1000);
    }

    pub fn advance_us(&self, us: u64) {
        self.0.fetch_add(us, Ordering::SeqCst);
    }
}

impl Clock for FakeClock {
    fn now_micros(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// A memory store at `unix_secs` (plus `extra_us`) on a fake clock.
pub fn memory_at(unix_secs: u64, extra_us: u64) -> (Arc<FakeClock>, MemoryStore) {
    let clock = Arc::new(FakeClock(AtomicU64::new(unix_secs * 1_000_000 + extra_us)));
    let store = MemoryStore::with_clock(clock.clone());
    (clock, store)
}

pub async fn connection() -> ConnectionManager {
    let client = redis::Client::open(REDIS_URL).unwrap();
    ConnectionManager::new(client).await.unwrap()
}

/// A Redis store under a fresh random prefix, so tests never see each
/// other's keys (or anything else in the database).
pub async fn redis_store() -> RedisStore {
    RedisStore::new(connection().await, format!("test-{}", uuid::Uuid::new_v4()))
}

pub fn bucket(scope: Scope, id: &str, limits: Limits) -> Bucket {
    Bucket {
        scope,
        id: id.to_owned(),
        limits,
    }
}

pub fn rpm(n: u64) -> Limits {
    Limits {
        requests_per_minute: Some(n),
        ..Limits::default()
    }
}

/// A request of `tokens` tokens and `cost` nano-USD with a fresh lease id.
pub fn request(buckets: &[Bucket], tokens: u64, cost: u64) -> Acquire {
    Acquire {
        tenant: "acme".to_owned(),
        lease_id: uuid::Uuid::new_v4().to_string(),
        buckets: buckets.to_vec(),
        tokens,
        cost_nano_usd: cost,
        lease_ttl_ms: 60_000,
    }
}

/// Settles `request` with the given actual amounts.
pub fn settle_of(request: &Acquire, actual_tokens: u64, actual_cost: u64) -> Settle {
    Settle {
        tenant: request.tenant.clone(),
        lease_id: request.lease_id.clone(),
        buckets: request.buckets.clone(),
        reserved_tokens: request.tokens,
        actual_tokens,
        reserved_cost_nano_usd: request.cost_nano_usd,
        actual_cost_nano_usd: actual_cost,
    }
}

/// How a suite moves time: the memory store's clock is moved by hand (so
/// its answers are exact), Redis's is real (so the test waits, and bounds
/// use what it measured).
pub enum Time {
    Fake {
        clock: Arc<FakeClock>,
        start_us: u64,
    },
    Real(std::time::Instant),
}

impl Time {
    pub async fn pass(&self, ms: u64) {
        match self {
            Time::Fake { clock, .. } => clock.advance_ms(ms),
            Time::Real(_) => tokio::time::sleep(std::time::Duration::from_millis(ms)).await,
        }
    }

    /// Milliseconds since the store was made, rounded up.
    pub fn elapsed_ms(&self) -> u64 {
        match self {
            Time::Fake { clock, start_us } => (clock.now_micros() - start_us).div_ceil(1000),
            Time::Real(start) => (start.elapsed().as_micros() as u64).div_ceil(1000),
        }
    }
}

/// A store of `kind` and its time: the memory store on a fake clock set to
/// now, Redis on the real one.
pub async fn store_and_time(kind: &str) -> (Store, Time) {
    match kind {
        "memory" => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap();
            let (clock, store) = memory_at(now.as_secs(), 0);
            let start_us = clock.now_micros();
            (Store::Memory(store), Time::Fake { clock, start_us })
        }
        _ => {
            let start = std::time::Instant::now();
            (Store::Redis(redis_store().await), Time::Real(start))
        }
    }
}

pub async fn store(kind: &str) -> Store {
    match kind {
        "memory" => Store::Memory(MemoryStore::new()),
        _ => Store::Redis(redis_store().await),
    }
}
