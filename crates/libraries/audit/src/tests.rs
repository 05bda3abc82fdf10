//! Audit events built from hits, and the trail through the real
//! `AuditClient` to a fake billing `Audit` served over gRPC on loopback.
//! The spool's own behaviour (durability, replay, bounds) is tested in
//! `llmgw-spool`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // panicking is how tests fail

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use llmgw_policy::{Action, Direction, Hit, RuleKind};
use llmgw_proto::billing_v1::audit_server::{Audit, AuditServer};
use llmgw_proto::billing_v1::{RecordAuditRequest, RecordAuditResponse};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

use crate::{
    AuditContext, AuditEvent, AuditEvents, AuditMetrics, AuditSpoolConfig, AuditTrail, EDGE_ATTEMPT,
};

fn hit(rule: &str, action: Action, start: usize, end: usize) -> Hit {
    Hit {
        rule_id: rule.into(),
        kind: RuleKind::Words,
        action,
        mask: "***".into(),
        start,
        end,
        match_hash: "9f2c".repeat(16),
        excerpt: None,
    }
}

fn context(request_id: &str) -> AuditContext {
    AuditContext {
        request_id: request_id.to_owned(),
        attempt: EDGE_ATTEMPT,
        tenant: "acme-production".to_owned(),
        key_id: "key_7f3a9c2e41b8".to_owned(),
        model: "gpt-4o".to_owned(),
        policy: "strict".to_owned(),
    }
}

#[test]
fn hits_become_events_numbered_within_the_request_across_takes() {
    let mut events = AuditEvents::new(context("req_1"));
    events.add(
        Direction::Input,
        "messages[0].content",
        &[
            hit("banned-words", Action::Block, 4, 13),
            hit("emails", Action::Redact, 20, 37),
        ],
    );
    let first = events.take();
    events.add(
        Direction::Input,
        "messages[1].tool_calls[0].function.arguments",
        &[hit("canary", Action::Flag, 0, 6)],
    );
    let second = events.take();
    assert_eq!(events.next_sequence(), 3);
    assert_eq!(events.pending(), 0);

    let sequences: Vec<u32> = first.iter().chain(&second).map(|e| e.sequence).collect();
    assert_eq!(sequences, [0, 1, 2]);
    let block = &first[0];
    assert_eq!(block.request_id, "req_1");
    assert_eq!(block.attempt, 0);
    assert_eq!(block.tenant, "acme-production");
    assert_eq!(block.key_id, "key_7f3a9c2e41b8");
    assert_eq!(block.model, "gpt-4o");
    assert_eq!(block.policy, "strict");
    assert_eq!(block.rule_id, "banned-words");
    assert_eq!(block.rule_kind, "words");
    assert_eq!(block.direction, "input");
    assert_eq!(block.action, "block");
    assert_eq!(block.location, "messages[0].content");
    assert_eq!((block.offset, block.length), (4, 9));
    assert_eq!(block.match_hash, "9f2c".repeat(16));
    assert_eq!(block.excerpt, "");
    assert!(block.occurred_at_ms > 1_700_000_000_000);
    assert_eq!(first[1].action, "redact");
    assert_eq!(
        second[0].location,
        "messages[1].tool_calls[0].function.arguments"
    );
}

/// What the fake billing saw.
#[derive(Default)]
struct AuditState {
    /// Times each (request_id, attempt, sequence) was recorded.
    recorded: Mutex<HashMap<(String, u32, u32), u32>>,
    /// Batches holding one of these request ids are refused as invalid.
    poison: HashSet<String>,
}

struct FakeAudit(Arc<AuditState>);

#[tonic::async_trait]
impl Audit for FakeAudit {
    async fn record_audit(
        &self,
        request: Request<RecordAuditRequest>,
    ) -> Result<Response<RecordAuditResponse>, Status> {
        let events = request.into_inner().events;
        if events.iter().any(|e| self.0.poison.contains(&e.request_id)) {
            return Err(Status::invalid_argument("rule_id must not be empty"));
        }
        let mut recorded = self.0.recorded.lock().unwrap();
        let (mut inserted, mut duplicates) = (0, 0);
        for event in events {
            let count = recorded
                .entry((event.request_id, event.attempt, event.sequence))
                .or_insert(0);
            *count += 1;
            if *count == 1 {
                inserted += 1;
            } else {
                duplicates += 1;
            }
        }
        Ok(Response::new(RecordAuditResponse {
            inserted,
            duplicates,
        }))
    }
}

fn event(n: u64) -> AuditEvent {
    let mut events = AuditEvents::new(context(&format!("req_{n:010}")));
    events.add(
        Direction::Input,
        "messages[0].content",
        &[hit("banned-words", Action::Block, 0, 3)],
    );
    events.take().remove(0)
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn render(metrics: &AuditMetrics) -> String {
    let mut registry = Registry::with_prefix("llmgw_edge");
    metrics.register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    text
}

#[tokio::test]
async fn audit_reaches_billing_over_grpc_retried_while_down_invalid_events_set_aside() {
    let dir = std::env::temp_dir().join(format!(
        "llmgw-audit-spool-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    // Billing is not listening yet: the lazily connected channel fails.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let metrics = AuditMetrics::default();
    let config = AuditSpoolConfig {
        spool_dir: Some(dir.clone()),
        flush_interval_ms: 2,
        batch_size: 50,
        ..AuditSpoolConfig::default()
    };
    let (stop, stopping) = oneshot::channel::<()>();
    let (trail, stopped) = AuditTrail::start(
        "edge-audit",
        &config,
        Some(&format!("http://{addr}")),
        dir.join("unused"),
        metrics.clone(),
        async move {
            let _ = stopping.await;
        },
    )
    .await
    .unwrap();
    let stopped = stopped.expect("a spool when billing is configured");
    trail.record((0..100).map(event).collect());
    assert!(trail.has_room());
    wait_until("failed calls", || metrics.spool.failures.get() >= 2).await;
    assert_eq!(metrics.spool.delivered.get(), 0);

    // Billing comes up on that address; it refuses one event as invalid.
    let state = Arc::new(AuditState {
        poison: HashSet::from([event(7).request_id]),
        ..AuditState::default()
    });
    let listener = TcpListener::bind(addr).await.unwrap();
    let (server_stop, server_stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(AuditServer::new(FakeAudit(state.clone())))
            .serve_with_incoming_shutdown(TcpIncoming::from(listener), async {
                let _ = server_stopped.await;
            }),
    );
    wait_until("99 delivered, 1 rejected", || {
        metrics.spool.delivered.get() == 99 && metrics.spool.rejected.get() == 1
    })
    .await;
    let _ = stop.send(());
    stopped.await;
    let recorded = state.recorded.lock().unwrap().clone();
    assert_eq!(recorded.len(), 99);
    assert!(recorded.values().all(|&times| times == 1));
    assert!(!recorded.contains_key(&(event(7).request_id, 0, 0)));

    let text = render(&metrics);
    for line in [
        r#"llmgw_edge_policy_hits_total{policy="strict",rule="banned-words",action="block",direction="input"} 100"#,
        "llmgw_edge_audit_spool_events 0",
        "llmgw_edge_audit_spooled_total 100",
        "llmgw_edge_audit_delivered_total 99",
        "llmgw_edge_audit_rejected_total 1",
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
    assert!(!text.contains("llmgw_edge_audit_not_recorded_total{"));
    let _ = server_stop.send(());
    let _ = server.await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn without_billing_hits_are_counted_as_not_recorded_and_requests_are_not_refused() {
    let metrics = AuditMetrics::default();
    let (trail, stopped) = AuditTrail::start(
        "edge-audit",
        &AuditSpoolConfig::default(),
        None,
        std::env::temp_dir().join("llmgw-audit-never-created"),
        metrics.clone(),
        async {},
    )
    .await
    .unwrap();
    assert!(stopped.is_none());
    trail.record(vec![event(1), event(2)]);
    assert!(trail.has_room());
    let text = render(&metrics);
    assert!(
        text.contains(r#"llmgw_edge_audit_not_recorded_total{reason="no_billing"} 2"#),
        "{text}"
    );
}

#[test]
fn spool_settings_are_validated() {
    let config = AuditSpoolConfig {
        max_bytes: 0,
        batch_size: 0,
        segment_bytes: 10,
        ..AuditSpoolConfig::default()
    };
    assert_eq!(
        config.validate(),
        [
            "max_bytes: must be above 0",
            "batch_size: must be above 0",
            "segment_bytes: must be at least 4096"
        ]
    );
    assert!(AuditSpoolConfig::default().validate().is_empty());
}
