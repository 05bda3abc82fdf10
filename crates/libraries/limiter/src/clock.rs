//! Time source of the memory store (the Redis store uses Redis `TIME`).

use std::time::{SystemTime, UNIX_EPOCH};

/// Unix time in microseconds. Injected so tests can move time by hand.
pub trait Clock: Send + Sync + 'static {
    fn now_micros(&self) -> u64;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_micros(&self) -> u64 {
        // A clock before 1970 is a broken machine; 0 keeps the limiter working
        // (windows just look old) instead of panicking on the hot path.
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
    }
}
