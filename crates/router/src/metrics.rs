//! Prometheus metrics of the router, served on `GET /metrics` (HTTP/1 on the
//! gRPC port).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::{EncodeMetric, MetricEncoder};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeploymentLabels {
    pub model: String,
    pub deployment: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AttemptLabels {
    pub model: String,
    pub deployment: String,
    /// "ok" or the error code (e.g. "ERROR_CODE_UPSTREAM_TIMEOUT").
    pub outcome: &'static str,
}

pub struct Metrics {
    registry: Registry,
    attempts: Family<AttemptLabels, Counter>,
    first_byte: Family<DeploymentLabels, Histogram>,
    breaker_state: Family<DeploymentLabels, Gauge>,
    pub spool: SpoolMetrics,
}

/// The usage spool's metrics. The two depth gauges are also the spool's own
/// accounting (what `emit` checks against `max_bytes`): one set of atomics,
/// so the exported figures cannot drift from the bound that is enforced.
#[derive(Clone, Default)]
pub struct SpoolMetrics {
    /// Usage events not yet acknowledged by billing (queued, or on disk).
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

/// Age of the oldest unacknowledged usage event, computed when scraped: a
/// stalled sender (billing down, retrying with a 10 s backoff) must not
/// freeze the figure that shows the stall.
#[derive(Clone, Debug, Default)]
pub struct OldestAge {
    /// Unix milliseconds of the oldest unacknowledged event; 0 for none.
    since_ms: Arc<AtomicI64>,
}

impl OldestAge {
    pub fn set(&self, unix_ms: i64) {
        self.since_ms.store(unix_ms, Ordering::Relaxed);
    }

    pub fn clear(&self) {
        self.set(0);
    }

    pub fn seconds(&self) -> f64 {
        let since = self.since_ms.load(Ordering::Relaxed);
        if since <= 0 {
            return 0.0;
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |now| i64::try_from(now.as_millis()).unwrap_or(i64::MAX));
        // A clock step backwards must not export a negative age.
        (now.saturating_sub(since).max(0) as f64) / 1000.0
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

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("llmgw_router");
        let attempts = Family::<AttemptLabels, Counter>::default();
        let first_byte = Family::<DeploymentLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.5, 14))
        });
        let breaker_state = Family::<DeploymentLabels, Gauge>::default();
        registry.register(
            "upstream_attempts",
            "Upstream calls, by deployment and outcome (retries and fallbacks included)",
            attempts.clone(),
        );
        registry.register(
            "upstream_first_byte_seconds",
            "Time from sending an upstream request to its response headers",
            first_byte.clone(),
        );
        registry.register(
            "breaker_state",
            "Circuit breaker per deployment: 0 closed, 1 open, 2 half-open",
            breaker_state.clone(),
        );
        let spool = SpoolMetrics::default();
        spool.register(&mut registry);
        Metrics {
            registry,
            attempts,
            first_byte,
            breaker_state,
            spool,
        }
    }

    pub fn breaker_gauge(&self, model: &str, deployment: &str) -> Gauge {
        self.breaker_state
            .get_or_create(&DeploymentLabels {
                model: model.to_owned(),
                deployment: deployment.to_owned(),
            })
            .clone()
    }

    pub fn attempt(&self, model: &str, deployment: &str, outcome: &'static str) {
        self.attempts
            .get_or_create(&AttemptLabels {
                model: model.to_owned(),
                deployment: deployment.to_owned(),
                outcome,
            })
            .inc();
    }

    pub fn first_byte(&self, model: &str, deployment: &str, elapsed: Duration) {
        self.first_byte
            .get_or_create(&DeploymentLabels {
                model: model.to_owned(),
                deployment: deployment.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
    }

    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

impl SpoolMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "usage_spool_events",
            "Usage events not yet acknowledged by billing (queued or on disk)",
            self.events.clone(),
        );
        registry.register(
            "usage_spool_bytes",
            "Bytes of usage events not yet acknowledged by billing",
            self.bytes.clone(),
        );
        registry.register(
            "usage_spool_oldest_age_seconds",
            "Age of the oldest usage event not yet acknowledged by billing (0 when none)",
            self.oldest.clone(),
        );
        registry.register(
            "usage_spooled",
            "Usage events written to the spool and fsynced",
            self.spooled.clone(),
        );
        registry.register(
            "usage_delivered",
            "Usage events acknowledged by billing (redeliveries after a restart included)",
            self.delivered.clone(),
        );
        registry.register(
            "usage_delivery_failures",
            "Failed RecordUsage calls (each is retried)",
            self.failures.clone(),
        );
        registry.register(
            "usage_spool_full",
            "Usage events refused because the spool was at its size bound",
            self.full.clone(),
        );
        registry.register(
            "usage_rejected",
            "Usage events billing refused as invalid, moved to the spool's rejected/ directory",
            self.rejected.clone(),
        );
    }
}
