//! Prometheus metrics of the billing service, served on `GET /metrics`
//! (HTTP/1 on the gRPC port, not on the admin port: scrapers should not
//! need the admin token).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LookupLabels {
    /// "found", "not_found" or "error" (the database did not answer).
    pub result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AdminLabels {
    /// The HTTP status answered.
    pub status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LedgerEventLabels {
    /// "inserted" (newly recorded) or "duplicate" (already in the ledger).
    pub result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LedgerBatchLabels {
    /// "ok", "invalid" (refused, the sender must not retry as is) or
    /// "error" (the database failed; the sender retries).
    pub outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyFetchLabels {
    /// "full" (the whole set sent), "unchanged" (the caller's etag is
    /// current) or "error" (the database failed).
    pub result: &'static str,
}

pub struct Metrics {
    registry: Registry,
    audit_events: Family<LedgerEventLabels, Counter>,
    audit_batches: Family<LedgerBatchLabels, Counter>,
    policy_fetches: Family<PolicyFetchLabels, Counter>,
    lookups: Family<LookupLabels, Counter>,
    admin_requests: Family<AdminLabels, Counter>,
    ledger_events: Family<LedgerEventLabels, Counter>,
    ledger_batches: Family<LedgerBatchLabels, Counter>,
    ledger_batch_seconds: Histogram,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("llmgw_billing");
        let lookups = Family::<LookupLabels, Counter>::default();
        let admin_requests = Family::<AdminLabels, Counter>::default();
        registry.register(
            "lookups",
            "LookupKey calls from the edge, by result",
            lookups.clone(),
        );
        // Present at 0 from the start, so alerts on rate(...{result="error"})
        // work before the first error rather than after it.
        for result in ["found", "not_found", "error"] {
            let _ = lookups.get_or_create(&LookupLabels { result });
        }
        registry.register(
            "admin_requests",
            "Admin API requests, by HTTP status (401s included: they show probing)",
            admin_requests.clone(),
        );
        let ledger_events = Family::<LedgerEventLabels, Counter>::default();
        registry.register(
            "ledger_events",
            "Usage events received by RecordUsage, by result (duplicates are redeliveries)",
            ledger_events.clone(),
        );
        for result in ["inserted", "duplicate"] {
            let _ = ledger_events.get_or_create(&LedgerEventLabels { result });
        }
        let ledger_batches = Family::<LedgerBatchLabels, Counter>::default();
        registry.register(
            "ledger_batches",
            "RecordUsage batches, by outcome",
            ledger_batches.clone(),
        );
        for outcome in ["ok", "invalid", "error"] {
            let _ = ledger_batches.get_or_create(&LedgerBatchLabels { outcome });
        }
        // 1 ms to ~16 s: a batch of 1000 takes tens of milliseconds; the top
        // buckets show lock waits and a struggling database.
        let ledger_batch_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 15));
        registry.register(
            "ledger_batch_seconds",
            "Time to record one RecordUsage batch in the database (one transaction)",
            ledger_batch_seconds.clone(),
        );
        let audit_events = Family::<LedgerEventLabels, Counter>::default();
        registry.register(
            "audit_events",
            "Audit events received by RecordAudit, by result (duplicates are redeliveries)",
            audit_events.clone(),
        );
        for result in ["inserted", "duplicate"] {
            let _ = audit_events.get_or_create(&LedgerEventLabels { result });
        }
        let audit_batches = Family::<LedgerBatchLabels, Counter>::default();
        registry.register(
            "audit_batches",
            "RecordAudit batches, by outcome",
            audit_batches.clone(),
        );
        for outcome in ["ok", "invalid", "error"] {
            let _ = audit_batches.get_or_create(&LedgerBatchLabels { outcome });
        }
        let policy_fetches = Family::<PolicyFetchLabels, Counter>::default();
        registry.register(
            "policy_fetches",
            "GetPolicies calls from the edges and routers, by result",
            policy_fetches.clone(),
        );
        for result in ["full", "unchanged", "error"] {
            let _ = policy_fetches.get_or_create(&PolicyFetchLabels { result });
        }
        Metrics {
            registry,
            audit_events,
            audit_batches,
            policy_fetches,
            lookups,
            admin_requests,
            ledger_events,
            ledger_batches,
            ledger_batch_seconds,
        }
    }

    pub fn lookup(&self, result: &'static str) {
        self.lookups.get_or_create(&LookupLabels { result }).inc();
    }

    pub fn admin_request(&self, status: u16) {
        self.admin_requests
            .get_or_create(&AdminLabels { status })
            .inc();
    }

    /// One RecordUsage batch: its outcome, what it recorded and how long the
    /// database took.
    pub fn ledger_batch(
        &self,
        outcome: &'static str,
        inserted: u64,
        duplicates: u64,
        seconds: f64,
    ) {
        self.ledger_batches
            .get_or_create(&LedgerBatchLabels { outcome })
            .inc();
        self.ledger_events
            .get_or_create(&LedgerEventLabels { result: "inserted" })
            .inc_by(inserted);
        self.ledger_events
            .get_or_create(&LedgerEventLabels {
                result: "duplicate",
            })
            .inc_by(duplicates);
        if outcome != "invalid" {
            self.ledger_batch_seconds.observe(seconds);
        }
    }

    /// One RecordAudit batch: its outcome and what it recorded.
    pub fn audit_batch(&self, outcome: &'static str, inserted: u64, duplicates: u64) {
        self.audit_batches
            .get_or_create(&LedgerBatchLabels { outcome })
            .inc();
        self.audit_events
            .get_or_create(&LedgerEventLabels { result: "inserted" })
            .inc_by(inserted);
        self.audit_events
            .get_or_create(&LedgerEventLabels {
                result: "duplicate",
            })
            .inc_by(duplicates);
    }

    pub fn policy_fetch(&self, result: &'static str) {
        self.policy_fetches
            .get_or_create(&PolicyFetchLabels { result })
            .inc();
    }

    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}
