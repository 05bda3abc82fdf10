//! Rate-limited logging of decisions made without Redis and of failed
//! settles. During an outage every request fails the same way: one line per
//! request would flood the logs exactly when they are needed, so failures
//! are counted and summarised once per interval.

use std::fmt::Display;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

pub(crate) const REPORT_INTERVAL: Duration = Duration::from_secs(10);

#[derive(Default)]
pub(crate) struct Incidents {
    degraded: AtomicU64,
    failed_settles: AtomicU64,
    /// Between the first degraded decision and the first quiet interval.
    outage: AtomicBool,
    last_error: Mutex<String>,
}

impl Incidents {
    /// One decision made without Redis.
    pub fn degraded(&self, error: &dyn Display) {
        self.degraded.fetch_add(1, Ordering::Relaxed);
        self.remember(error);
        // The first one is logged at once, so an outage shows up in the logs
        // without waiting for the summary.
        if !self.outage.swap(true, Ordering::Relaxed) {
            tracing::warn!(%error, "deciding quotas without Redis (on_redis_failure policy)");
        }
    }

    /// One settle Redis did not take; the lease timeout releases it instead.
    pub fn failed_settle(&self, error: &dyn Display) {
        self.failed_settles.fetch_add(1, Ordering::Relaxed);
        self.remember(error);
    }

    fn remember(&self, error: &dyn Display) {
        // Contended means another request is recording the same outage.
        if let Ok(mut last) = self.last_error.try_lock() {
            *last = error.to_string();
        }
    }

    /// Logs what happened since the last call; called every `interval`.
    pub fn report(&self, interval: Duration) {
        let degraded = self.degraded.swap(0, Ordering::Relaxed);
        let failed_settles = self.failed_settles.swap(0, Ordering::Relaxed);
        let seconds = interval.as_secs();
        if degraded > 0 || failed_settles > 0 {
            let error = std::mem::take(
                &mut *self
                    .last_error
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner),
            );
            if degraded > 0 {
                tracing::warn!(
                    count = degraded,
                    %error,
                    "quota decisions without Redis: {degraded} in the last {seconds}s"
                );
            }
            if failed_settles > 0 {
                tracing::warn!(
                    count = failed_settles,
                    %error,
                    "quota settles Redis did not take: {failed_settles} in the last {seconds}s (their leases time out instead)"
                );
            }
        } else if self.outage.swap(false, Ordering::Relaxed) {
            tracing::info!("quota decisions use Redis again");
        }
    }

    /// Reports every `interval` until the task is aborted.
    pub async fn report_every(&self, interval: Duration) {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick is immediate: nothing to report yet.
        ticks.tick().await;
        loop {
            ticks.tick().await;
            self.report(interval);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_reset_per_report() {
        let incidents = Incidents::default();
        incidents.degraded(&"connection refused");
        incidents.degraded(&"connection refused");
        incidents.failed_settle(&"timed out");
        assert_eq!(incidents.degraded.load(Ordering::Relaxed), 2);
        incidents.report(REPORT_INTERVAL);
        assert_eq!(incidents.degraded.load(Ordering::Relaxed), 0);
        assert_eq!(incidents.failed_settles.load(Ordering::Relaxed), 0);
        assert!(incidents.outage.load(Ordering::Relaxed));
        // A quiet interval ends the outage.
        incidents.report(REPORT_INTERVAL);
        assert!(!incidents.outage.load(Ordering::Relaxed));
    }
}
