//! The spool's Prometheus metrics, registered by its owner under a prefix
//! naming the events (the router's usage spool: `llmgw_router_usage_...`).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::{EncodeMetric, MetricEncoder};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The spool's metrics. The two depth gauges are also the spool's own
/// accounting (what `emit` checks against `max_bytes`): one set of atomics,
/// so the exported figures cannot drift from the bound that is enforced.
#[derive(Clone, Default)]
pub struct SpoolMetrics {
    /// Events not yet acknowledged by the receiver (queued, or on disk).
    pub events: Gauge,
    /// Their size in bytes as spool records (header included).
    pub bytes: Gauge,
    pub oldest: OldestAge,
    pub spooled: Counter,
    pub delivered: Counter,
    pub failures: Counter,
    pub full: Counter,
    pub rejected: Counter,
}

impl SpoolMetrics {
    /// Registers every metric in `registry`, named after its prefix: pass
    /// `registry.sub_registry_with_prefix("usage")` for
    /// `<prefix>_usage_spool_events`, `<prefix>_usage_spooled_total`, ...
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "spool_events",
            "Events not yet acknowledged by the receiver (queued or on disk)",
            self.events.clone(),
        );
        registry.register(
            "spool_bytes",
            "Bytes of events not yet acknowledged by the receiver",
            self.bytes.clone(),
        );
        registry.register(
            "spool_oldest_age_seconds",
            "Age of the oldest event not yet acknowledged by the receiver (0 when none)",
            self.oldest.clone(),
        );
        registry.register(
            "spooled",
            "Events written to the spool and fsynced",
            self.spooled.clone(),
        );
        registry.register(
            "delivered",
            "Events acknowledged by the receiver (redeliveries after a restart included)",
            self.delivered.clone(),
        );
        registry.register(
            "delivery_failures",
            "Failed deliveries (each is retried)",
            self.failures.clone(),
        );
        registry.register(
            "spool_full",
            "Events refused because the spool was at its size bound",
            self.full.clone(),
        );
        registry.register(
            "rejected",
            "Events the receiver refused as invalid, moved to the spool's rejected/ directory",
            self.rejected.clone(),
        );
    }
}

/// Age of the oldest unacknowledged event, computed when scraped: a stalled
/// sender (receiver down, retrying with a 10 s backoff) must not freeze the
/// figure that shows the stall.
#[derive(Clone, Debug, Default)]
pub struct OldestAge {
    /// Unix milliseconds of the oldest unacknowledged event; 0 for none.
    since_ms: Arc<AtomicI64>,
}

impl OldestAge {
    pub(crate) fn set(&self, unix_ms: i64) {
        self.since_ms.store(unix_ms, Ordering::Relaxed);
    }

    pub(crate) fn clear(&self) {
        self.set(0);
    }

    pub fn seconds(&self) -> f64 {
        let since = self.since_ms.load(Ordering::Relaxed);
        if since <= 0 {
            return 0.0;
        }
        // A clock step backwards must not export a negative age.
        (now_ms().saturating_sub(since).max(0) as f64) / 1000.0
    }
}

impl EncodeMetric for OldestAge {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_gauge(&self.seconds())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Gauge
    }
}

/// Unix milliseconds now (0 before 1970).
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |now| i64::try_from(now.as_millis()).unwrap_or(i64::MAX))
}
