//! Logging an outage once per interval: during one, every request fails the
//! same way, and a line per request would flood the logs when they matter.

use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct Throttle {
    every: Duration,
    last: Mutex<Option<Instant>>,
}

impl Throttle {
    pub fn new(every: Duration) -> Throttle {
        Throttle {
            every,
            last: Mutex::new(None),
        }
    }

    /// True at most once per interval (and the first time).
    pub fn ready(&self) -> bool {
        let Ok(mut last) = self.last.lock() else {
            return false;
        };
        if last.is_some_and(|at| at.elapsed() < self.every) {
            return false;
        }
        *last = Some(Instant::now());
        true
    }
}
