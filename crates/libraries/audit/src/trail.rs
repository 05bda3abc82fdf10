//! The audit trail a service holds: every hit is counted, logged (ids only)
//! and emitted into a durable spool that delivers it to billing.
//!
//! Failure behaviour, the same for the edge and the routers:
//! - Billing down: events wait in the spool (on disk) and are delivered when
//!   it is back; requests are served as usual.
//! - Spool full (billing unreachable for long): [`AuditTrail::has_room`]
//!   turns false a little before the bound, and the owner refuses new
//!   requests that a policy applies to (503), as the router refuses calls it
//!   could not bill: a request is not served when its audit events could not
//!   be kept. An event emitted when the spool is full anyway (a request
//!   admitted just before) is not recorded: the spool logs its ids, and
//!   `audit_not_recorded_total{reason="spool_full"}` counts it; that request
//!   still completes as decided (a blocked prompt still gets its 400).
//! - No billing configured (`billing_url` unset): nothing is recorded; each
//!   hit still gets its log line (ids only) and
//!   `audit_not_recorded_total{reason="no_billing"}` counts it.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use llmgw_proto::billing_v1::AuditEvent;
use llmgw_spool::{EmitError, Sink, SpoolConfig, SpoolMetrics};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde::Deserialize;

use crate::delivery::AuditDelivery;

/// The durable spool audit events wait in until billing has them (a config
/// section: `edge.audit`, `router.audit`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditSpoolConfig {
    /// One directory per process (it is locked); `llmgw all` puts it under
    /// `billing.data_dir`.
    pub spool_dir: Option<PathBuf>,
    /// Bound on unacknowledged events on disk. Near it, requests a policy
    /// applies to are refused (503) rather than served unaudited.
    pub max_bytes: u64,
    pub segment_bytes: u64,
    /// Group commit: events written within this interval share one fsync.
    pub flush_interval_ms: u64,
    /// Events per delivery to billing.
    pub batch_size: usize,
    /// At shutdown, how long to keep delivering; the rest stays on disk.
    pub drain_timeout_secs: u64,
}

impl Default for AuditSpoolConfig {
    fn default() -> Self {
        AuditSpoolConfig {
            spool_dir: None,
            // Audit events are small (~200 bytes): 256 MiB is a million.
            max_bytes: 256 << 20,
            segment_bytes: 16 << 20,
            flush_interval_ms: 20,
            batch_size: 500,
            drain_timeout_secs: 5,
        }
    }
}

impl AuditSpoolConfig {
    /// What is wrong with this section, each problem naming its key.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.max_bytes == 0 {
            problems.push("max_bytes: must be above 0".to_owned());
        }
        if self.batch_size == 0 {
            problems.push("batch_size: must be above 0".to_owned());
        }
        if self.segment_bytes < 4096 {
            problems.push("segment_bytes: must be at least 4096".to_owned());
        }
        problems
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HitLabels {
    pub policy: String,
    /// Rule ids come from the configuration and the admin API, never from
    /// client input: a bounded set.
    pub rule: String,
    pub action: String,
    pub direction: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NotRecordedLabels {
    /// `no_billing`, `spool_full` or `spool_closed`.
    pub reason: &'static str,
}

/// The trail's Prometheus metrics.
#[derive(Clone, Default)]
pub struct AuditMetrics {
    /// Policy hits by policy, rule, action and direction.
    pub hits: Family<HitLabels, Counter>,
    /// Audit events that will never reach billing, by reason.
    pub not_recorded: Family<NotRecordedLabels, Counter>,
    /// The audit spool's own.
    pub spool: SpoolMetrics,
}

impl AuditMetrics {
    /// Registers `<prefix>_policy_hits_total`,
    /// `<prefix>_audit_not_recorded_total` and the spool's
    /// `<prefix>_audit_spool_events`, `<prefix>_audit_delivered_total`...
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "policy_hits",
            "Content-policy hits, by policy, rule, action and direction",
            self.hits.clone(),
        );
        let audit = registry.sub_registry_with_prefix("audit");
        audit.register(
            "not_recorded",
            "Audit events that will not reach billing (no billing configured, spool full or stopped)",
            self.not_recorded.clone(),
        );
        self.spool.register(audit);
    }

    fn not_recorded(&self, reason: &'static str) {
        self.not_recorded
            .get_or_create(&NotRecordedLabels { reason })
            .inc();
    }
}

/// Where a service records audit events. Cheap to clone.
#[derive(Clone)]
pub struct AuditTrail {
    /// `None`: no billing configured; hits are logged and counted only.
    sink: Option<Sink<AuditEvent>>,
    metrics: AuditMetrics,
}

impl AuditTrail {
    /// Starts the durable spool (named `name` in logs: `edge-audit`,
    /// `router-audit`) delivering to billing at `billing_url`, in
    /// `config.spool_dir` (else `default_dir`). Without `billing_url`
    /// nothing is recorded (see the module docs) and there is no spool.
    ///
    /// The returned future (when there is a spool) drives its stop, as
    /// `llmgw_spool::start`'s does: await it once the server has drained,
    /// after `shutdown` resolved.
    pub async fn start(
        name: &'static str,
        config: &AuditSpoolConfig,
        billing_url: Option<&str>,
        default_dir: PathBuf,
        metrics: AuditMetrics,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<(
        AuditTrail,
        Option<impl Future<Output = ()> + Send + 'static>,
    )> {
        let Some(billing_url) = billing_url else {
            tracing::warn!(
                spool = name,
                "no billing_url: content-policy hits are logged (ids only) but not recorded in the audit trail"
            );
            return Ok((AuditTrail::without_billing(metrics), None));
        };
        // Lazy: the service starts, and serves, while billing is down.
        let channel = llmgw_grpc::channel(billing_url)
            .with_context(|| format!("{name}: billing_url {billing_url:?}"))?;
        let spool_config = SpoolConfig {
            name,
            dir: config.spool_dir.clone().unwrap_or(default_dir),
            max_bytes: config.max_bytes,
            segment_bytes: config.segment_bytes,
            flush_interval: Duration::from_millis(config.flush_interval_ms),
            batch_size: config.batch_size,
        };
        let (sink, done) = llmgw_spool::start(
            spool_config,
            AuditDelivery::new(channel),
            metrics.spool.clone(),
            shutdown,
            Duration::from_secs(config.drain_timeout_secs),
        )
        .await?;
        Ok((
            AuditTrail {
                sink: Some(sink),
                metrics,
            },
            Some(done),
        ))
    }

    /// A trail over an already started spool (tests, or an owner that
    /// starts the spool itself with [`AuditDelivery`]).
    pub fn with_sink(sink: Sink<AuditEvent>, metrics: AuditMetrics) -> AuditTrail {
        AuditTrail {
            sink: Some(sink),
            metrics,
        }
    }

    /// No billing configured: hits are logged and counted, not recorded.
    pub fn without_billing(metrics: AuditMetrics) -> AuditTrail {
        AuditTrail {
            sink: None,
            metrics,
        }
    }

    /// False when the spool is (nearly) full: the owner refuses requests a
    /// policy applies to (503) rather than serve them unaudited. Always
    /// true without billing (nothing would be recorded anyway).
    pub fn has_room(&self) -> bool {
        self.sink.as_ref().is_none_or(Sink::has_room)
    }

    pub fn metrics(&self) -> &AuditMetrics {
        &self.metrics
    }

    /// Counts, logs (one line per hit, ids only: never the text, the match
    /// hash or the excerpt) and spools `events`. Never blocks and does no
    /// I/O. An event that cannot be recorded is logged by the spool with its
    /// ids and counted in `audit_not_recorded_total`: the caller has
    /// nothing more to do.
    pub fn record(&self, events: Vec<AuditEvent>) {
        for event in events {
            self.metrics
                .hits
                .get_or_create(&HitLabels {
                    policy: event.policy.clone(),
                    rule: event.rule_id.clone(),
                    action: event.action.clone(),
                    direction: event.direction.clone(),
                })
                .inc();
            tracing::info!(
                request_id = %event.request_id,
                attempt = event.attempt,
                sequence = event.sequence,
                tenant = %event.tenant,
                key_id = %event.key_id,
                policy = %event.policy,
                rule_id = %event.rule_id,
                action = %event.action,
                direction = %event.direction,
                location = %event.location,
                "content policy hit"
            );
            match &self.sink {
                None => self.metrics.not_recorded("no_billing"),
                Some(sink) => match sink.emit(event) {
                    Ok(()) => {}
                    Err(EmitError::Full) => self.metrics.not_recorded("spool_full"),
                    Err(EmitError::Closed) => self.metrics.not_recorded("spool_closed"),
                },
            }
        }
    }
}
