//! Prometheus metrics of the quota service, served on `GET /metrics` (HTTP/1
//! on the gRPC port).

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    /// "allowed", "denied" (a limit said no: 429) or "unavailable" (a limit
    /// failing closed could not be checked: 503).
    pub outcome: &'static str,
    /// "true" when decided without Redis.
    pub degraded: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabels {
    /// "acquire" or "settle".
    pub op: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SyncLabels {
    /// "ok", "billing_unavailable", "invalid_response", "store_unavailable"
    /// or "other_month" (the month turned since billing computed it).
    pub outcome: &'static str,
}

pub struct Metrics {
    registry: Registry,
    decisions: Family<DecisionLabels, Counter>,
    redis_seconds: Family<OpLabels, Histogram>,
    redis_errors: Family<OpLabels, Counter>,
    redis_timeouts: Family<OpLabels, Counter>,
    budget_syncs: Family<SyncLabels, Counter>,
    budget_floors_raised: Counter,
    late_acquires_released: Counter,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("llmgw_quota");
        let decisions = Family::<DecisionLabels, Counter>::default();
        // From 0.1 ms: a healthy round trip is well under a millisecond, and
        // the interesting part is how close it gets to `redis_timeout_ms`.
        let redis_seconds = Family::<OpLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0001, 2.0, 16))
        });
        let redis_errors = Family::<OpLabels, Counter>::default();
        let redis_timeouts = Family::<OpLabels, Counter>::default();
        // Exported at 0 from the start: an alert on their rate needs the
        // series before the first error.
        for op in ["acquire", "settle"] {
            let _ = redis_errors.get_or_create(&OpLabels { op });
            let _ = redis_timeouts.get_or_create(&OpLabels { op });
        }
        registry.register(
            "decisions",
            "Acquire decisions, by outcome and whether Redis was bypassed",
            decisions.clone(),
        );
        registry.register(
            "redis_seconds",
            "Redis round trips of Acquire and Settle, timeouts included",
            redis_seconds.clone(),
        );
        registry.register(
            "redis_errors",
            "Acquire and Settle calls Redis did not answer: errors, timeouts, not connected",
            redis_errors.clone(),
        );
        registry.register(
            "redis_timeouts",
            "Of redis_errors, the calls cut at redis_timeout_ms (Redis slow or hanging, \
             or the first connection still being made)",
            redis_timeouts.clone(),
        );
        let budget_syncs = Family::<SyncLabels, Counter>::default();
        let budget_floors_raised = Counter::default();
        registry.register(
            "budget_syncs",
            "Budget syncs from the usage ledger (billing MonthToDateSpend), by outcome",
            budget_syncs.clone(),
        );
        registry.register(
            "budget_floors_raised",
            "Tenant and key budget counters raised to the ledger's month-to-date spend",
            budget_floors_raised.clone(),
        );
        let late_acquires_released = Counter::default();
        registry.register(
            "late_acquires_released",
            "Acquires Redis ran after the wait for them ended, whose reservation was handed back",
            late_acquires_released.clone(),
        );
        Metrics {
            registry,
            decisions,
            redis_seconds,
            redis_errors,
            redis_timeouts,
            budget_syncs,
            budget_floors_raised,
            late_acquires_released,
        }
    }

    pub fn decision(&self, outcome: &'static str, degraded: bool) {
        self.decisions
            .get_or_create(&DecisionLabels {
                outcome,
                degraded: if degraded { "true" } else { "false" },
            })
            .inc();
    }

    pub fn redis_round_trip(&self, op: &'static str, elapsed: Duration) {
        self.redis_seconds
            .get_or_create(&OpLabels { op })
            .observe(elapsed.as_secs_f64());
    }

    pub fn late_acquire_released(&self) {
        self.late_acquires_released.inc();
    }

    /// A call Redis did not answer; `timed_out` when our own bound cut it.
    pub fn redis_error(&self, op: &'static str, timed_out: bool) {
        self.redis_errors.get_or_create(&OpLabels { op }).inc();
        if timed_out {
            self.redis_timeouts.get_or_create(&OpLabels { op }).inc();
        }
    }

    pub fn budget_sync(&self, outcome: &'static str) {
        self.budget_syncs
            .get_or_create(&SyncLabels { outcome })
            .inc();
    }

    pub fn budget_floor_raised(&self) {
        self.budget_floors_raised.inc();
    }

    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}
