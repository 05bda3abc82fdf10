//! Whether Redis is up, as Redis itself shows it: the connection reports an
//! error, a health probe goes unanswered, or a call stays unanswered for far
//! longer than a round trip ever takes (`redis_timeout_ms`).
//!
//! Not when one call waited a few milliseconds in our own run queue: under
//! overload the wait is ours, not Redis's, and deciding without Redis there
//! would give away exactness exactly when traffic is highest. So a request
//! waits for Redis while Redis is up; once Redis is down, requests stop
//! waiting at once and follow `on_redis_failure` until a probe answers again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use llmgw_limiter::{RedisStore, StoreError};
use redis::{ErrorKind, ServerErrorKind};

use crate::metrics::Metrics;
use crate::store::RedisFailure;

/// Between health probes: how soon a recovered Redis is used again, and how
/// soon a silent one is noticed without any request waiting on it.
pub(crate) const PROBE_INTERVAL: Duration = Duration::from_millis(250);

pub(crate) struct RedisHealth {
    down: AtomicBool,
    metrics: Arc<Metrics>,
}

impl RedisHealth {
    pub fn new(metrics: Arc<Metrics>) -> RedisHealth {
        metrics.redis_up(true);
        RedisHealth {
            down: AtomicBool::new(false),
            metrics,
        }
    }

    pub fn is_up(&self) -> bool {
        !self.down.load(Ordering::Relaxed)
    }

    /// A call failed: Redis is down if the failure says so. Answer errors
    /// (a script error, an invalid answer) leave it up: Redis answered.
    pub fn failed(&self, failure: &RedisFailure) {
        if says_down(failure) && !self.down.swap(true, Ordering::Relaxed) {
            self.metrics.redis_up(false);
            tracing::warn!(error = %failure, "quota: Redis is down; deciding per on_redis_failure until it answers a health probe");
        }
    }

    pub fn answered(&self) {
        if self.down.swap(false, Ordering::Relaxed) {
            self.metrics.redis_up(true);
            tracing::info!("quota: Redis answers again; deciding with it");
        }
    }

    /// Pings Redis every [`PROBE_INTERVAL`], each ping bounded by `timeout`,
    /// for as long as the store lives.
    pub async fn probe(&self, store: RedisStore, timeout: Duration) {
        loop {
            tokio::time::sleep(PROBE_INTERVAL).await;
            match tokio::time::timeout(timeout, store.ping()).await {
                Ok(Ok(())) => self.answered(),
                Ok(Err(error)) => self.failed(&RedisFailure::Store(error)),
                Err(_) => self.failed(&RedisFailure::Timeout(timeout)),
            }
        }
    }
}

fn says_down(failure: &RedisFailure) -> bool {
    match failure {
        RedisFailure::NotConnected | RedisFailure::Down | RedisFailure::Timeout(_) => true,
        RedisFailure::Store(StoreError::Redis(error)) => {
            error.is_io_error()
                || error.is_connection_dropped()
                || error.is_connection_refusal()
                || error.is_timeout()
                || error.is_cluster_error()
                || matches!(
                    error.kind(),
                    ErrorKind::Server(
                        ServerErrorKind::BusyLoading
                            | ServerErrorKind::MasterDown
                            | ServerErrorKind::ReadOnly
                            | ServerErrorKind::TryAgain
                    )
                )
        }
        RedisFailure::Store(StoreError::Invalid(_)) => false,
    }
}
