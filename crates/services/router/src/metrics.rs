//! Prometheus metrics of the router, served on `GET /metrics` (HTTP/1 on the
//! gRPC port).

use std::time::Duration;

use llmgw_audit::AuditMetrics;
use llmgw_policy::feed::FeedMetrics;
use llmgw_spool::SpoolMetrics;
use prometheus_client::encoding::EncodeLabelSet;
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
    /// The usage spool's, named `llmgw_router_usage_*`.
    pub spool: SpoolMetrics,
    /// Policy hits in answers (`llmgw_router_policy_hits_total` by policy,
    /// rule, action and direction) and the audit spool's
    /// (`llmgw_router_audit_*`).
    pub audit: AuditMetrics,
    /// The policy feed's (`llmgw_router_policy_updates_total`, ...).
    pub policy_feed: FeedMetrics,
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
        spool.register(registry.sub_registry_with_prefix("usage"));
        let audit = AuditMetrics::default();
        audit.register(&mut registry);
        let policy_feed = FeedMetrics::default();
        policy_feed.register(&mut registry);
        Metrics {
            registry,
            attempts,
            first_byte,
            breaker_state,
            spool,
            audit,
            policy_feed,
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
