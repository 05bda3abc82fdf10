//! Prometheus metrics of the edge, served on `GET /metrics`.

use std::sync::Arc;
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: &'static str,
    /// A configured alias, or "unknown": client input never becomes a label.
    pub model: String,
    pub status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenLabels {
    pub model: String,
    pub kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelLabels {
    pub model: String,
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: Family<RequestLabels, Histogram>,
    first_token: Family<ModelLabels, Histogram>,
    tokens: Family<TokenLabels, Counter>,
    pub open_streams: Gauge,
    pub quota_unreachable: Counter,
    /// How long each Acquire the quota service answered took, from the
    /// edge's call to its answer (Redis and the hop included).
    pub quota_decision: Histogram,
    /// Requests refused at the admission limit (`max_in_flight`).
    pub overloaded: Counter,
    /// Requests refused with 429 by the failed-authentication throttle,
    /// each a key lookup saved.
    pub auth_throttled: Counter,
    /// The policy feed's (`llmgw_edge_policy_*`).
    pub policy_feed: llmgw_policy::feed::FeedMetrics,
    /// Policy hits and the audit spool (`llmgw_edge_policy_hits_total`,
    /// `llmgw_edge_audit_*`).
    pub audit: llmgw_audit::AuditMetrics,
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("llmgw_edge");
        // 0.5 ms .. ~4.5 min: covers an error answered at the edge and a long stream.
        let seconds = || Histogram::new(exponential_buckets(0.0005, 2.5, 15));
        let requests = Family::<RequestLabels, Counter>::default();
        let duration = Family::<RequestLabels, Histogram>::new_with_constructor(seconds);
        let first_token = Family::<ModelLabels, Histogram>::new_with_constructor(seconds);
        let tokens = Family::<TokenLabels, Counter>::default();
        let open_streams = Gauge::default();
        let quota_unreachable = Counter::default();
        // 50 µs .. ~1.6 s, doubling: a decision's p99 against 1 ms is read
        // from the 0.8 and 1.6 ms bounds.
        let quota_decision = Histogram::new(exponential_buckets(0.000_05, 2.0, 16));
        registry.register(
            "quota_decision_seconds",
            "Time from the edge's Acquire call to the quota service's answer",
            quota_decision.clone(),
        );
        let overloaded = Counter::default();
        registry.register(
            "overloaded",
            "API requests refused with 503 overloaded at the admission limit (max_in_flight)",
            overloaded.clone(),
        );
        let auth_throttled = Counter::default();
        registry.register(
            "auth_throttled",
            "API requests refused with 429 because their client address failed authentication too often (no key lookup made)",
            auth_throttled.clone(),
        );
        registry.register("requests", "HTTP requests answered", requests.clone());
        registry.register(
            "request_duration_seconds",
            "Time from request to the last byte of the answer",
            duration.clone(),
        );
        registry.register(
            "time_to_first_token_seconds",
            "Time from request to the first streamed chunk",
            first_token.clone(),
        );
        registry.register(
            "tokens",
            "Tokens used, by kind (prompt, completion)",
            tokens.clone(),
        );
        registry.register(
            "open_streams",
            "SSE streams being served",
            open_streams.clone(),
        );
        registry.register(
            "quota_unreachable",
            "Requests decided without the quota service (unreachable or too slow), per on_quota_unreachable",
            quota_unreachable.clone(),
        );
        let policy_feed = llmgw_policy::feed::FeedMetrics::default();
        policy_feed.register(&mut registry);
        let audit = llmgw_audit::AuditMetrics::default();
        audit.register(&mut registry);
        Arc::new(Metrics {
            registry,
            policy_feed,
            audit,
            requests,
            duration,
            first_token,
            tokens,
            open_streams,
            quota_unreachable,
            quota_decision,
            overloaded,
            auth_throttled,
        })
    }

    pub fn observe(&self, route: &'static str, model: &str, status: u16, started: Instant) {
        let labels = RequestLabels {
            route,
            model: model.to_owned(),
            status,
        };
        self.requests.get_or_create(&labels).inc();
        self.duration
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64());
    }

    pub fn first_token(&self, model: &str, started: Instant) {
        self.first_token
            .get_or_create(&ModelLabels {
                model: model.to_owned(),
            })
            .observe(started.elapsed().as_secs_f64());
    }

    pub fn tokens(&self, model: &str, prompt: u64, completion: u64) {
        for (kind, count) in [("prompt", prompt), ("completion", completion)] {
            self.tokens
                .get_or_create(&TokenLabels {
                    model: model.to_owned(),
                    kind,
                })
                .inc_by(count);
        }
    }

    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}
