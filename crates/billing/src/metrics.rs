//! Prometheus metrics of the billing service, served on `GET /metrics`
//! (HTTP/1 on the gRPC port, not on the admin port: scrapers should not
//! need the admin token).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
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

pub struct Metrics {
    registry: Registry,
    lookups: Family<LookupLabels, Counter>,
    admin_requests: Family<AdminLabels, Counter>,
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
        Metrics {
            registry,
            lookups,
            admin_requests,
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

    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}
