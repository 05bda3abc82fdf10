//! The lines a receiver outage writes. When to write them (once when it
//! starts, at most once a minute while it lasts, once when it ends) is
//! `llmgw_telemetry::OutageLog`'s decision, as for every other dependency.

use std::time::Duration;

use llmgw_telemetry::OutageLog;

use crate::delivery::DeliveryError;
use crate::metrics::SpoolMetrics;

/// An outage is logged when it starts, then at most this often.
const OUTAGE_LOG_EVERY: Duration = Duration::from_secs(60);

pub struct Outage {
    spool: &'static str,
    log: OutageLog,
}

impl Outage {
    pub fn new(spool: &'static str) -> Outage {
        Outage {
            spool,
            log: OutageLog::new(OUTAGE_LOG_EVERY),
        }
    }

    pub fn failed(&mut self, error: &DeliveryError, metrics: &SpoolMetrics) {
        if let Some(failed_calls) = self.log.failed() {
            tracing::warn!(
                spool = self.spool,
                %error,
                failed_calls,
                backlog_events = metrics.events.get(),
                backlog_bytes = metrics.bytes.get(),
                "spool delivery failing; events stay in the spool and are retried"
            );
        }
    }

    pub fn resumed(&mut self, metrics: &SpoolMetrics) {
        if let Some(recovered) = self.log.recovered() {
            tracing::info!(
                spool = self.spool,
                outage_secs = recovered.lasted.as_secs_f64(),
                failed_calls = recovered.failures,
                backlog_events = metrics.events.get(),
                backlog_bytes = metrics.bytes.get(),
                "spool delivery resumed"
            );
        }
    }
}
