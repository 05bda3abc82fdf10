//! Logging a receiver outage: once when it starts, at most once a minute
//! while it lasts, and once when it ends. During an outage every call fails
//! the same way, and a line per retry would bury everything else.

use std::time::{Duration, Instant};

use crate::delivery::DeliveryError;
use crate::metrics::SpoolMetrics;

/// An outage is logged when it starts, then at most this often.
const OUTAGE_LOG_EVERY: Duration = Duration::from_secs(60);

pub struct Outage {
    spool: &'static str,
    since: Option<Instant>,
    logged: Option<Instant>,
    failed_calls: u64,
}

impl Outage {
    pub fn new(spool: &'static str) -> Outage {
        Outage {
            spool,
            since: None,
            logged: None,
            failed_calls: 0,
        }
    }

    pub fn failed(&mut self, error: &DeliveryError, metrics: &SpoolMetrics) {
        self.failed_calls += 1;
        let now = Instant::now();
        let Some(since) = self.since else {
            self.since = Some(now);
            self.logged = Some(now);
            tracing::warn!(
                spool = self.spool,
                %error,
                backlog_events = metrics.events.get(),
                backlog_bytes = metrics.bytes.get(),
                "spool delivery failing; events stay in the spool and are retried"
            );
            return;
        };
        if self
            .logged
            .is_some_and(|at| at.elapsed() >= OUTAGE_LOG_EVERY)
        {
            self.logged = Some(now);
            tracing::warn!(
                spool = self.spool,
                %error,
                outage_secs = since.elapsed().as_secs(),
                failed_calls = self.failed_calls,
                backlog_events = metrics.events.get(),
                backlog_bytes = metrics.bytes.get(),
                "spool delivery still failing"
            );
        }
    }

    pub fn resumed(&mut self, metrics: &SpoolMetrics) {
        if let Some(since) = self.since.take() {
            tracing::info!(
                spool = self.spool,
                outage_secs = since.elapsed().as_secs_f64(),
                failed_calls = self.failed_calls,
                backlog_events = metrics.events.get(),
                backlog_bytes = metrics.bytes.get(),
                "spool delivery resumed"
            );
            self.failed_calls = 0;
        }
    }
}
