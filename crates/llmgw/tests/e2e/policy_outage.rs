//! The edge's audit trail when billing is away: nothing lost during an
//! outage, and requests refused (not served unaudited) once the spool is
//! full.

use std::time::Duration;

use llmgw_testdb::TestDatabase;
use serde_json::json;
use tokio::net::TcpListener;

use crate::accounts::scratch_dir;
use crate::harness::Gateway;
use crate::policy_audit::{DEADLINE, PolicyBilling, admin_at, send, wait_audited};
use crate::policy_input::{input_policy, with_input_policy};

#[tokio::test]
async fn with_billing_down_every_audit_event_arrives_once_it_is_back() {
    let database = TestDatabase::create("e2e_policy_audit_outage")
        .await
        .expect("postgres reachable");
    let dir = scratch_dir("policy-audit-outage");
    let billing = PolicyBilling::start(database.url(), &dir, None, None, input_policy()).await;
    let (grpc, admin) = (billing.grpc, billing.admin);
    let gateway = Gateway::start_with({
        let dir = dir.clone();
        move |config| {
            with_input_policy(config);
            config.edge.billing_url = Some(format!("http://{grpc}"));
            config.router.usage.spool_dir = Some(dir.join("spool"));
            config.edge.audit.spool_dir = Some(dir.join("audit-spool"));
            config.edge.audit.flush_interval_ms = 5;
        }
    })
    .await;
    // The policy set billing serves is in force before billing goes away.
    let metrics_until = |gateway: &Gateway, check: fn(&str) -> bool| {
        let client = gateway.client.clone();
        let url = gateway.url("/metrics");
        async move {
            let deadline = tokio::time::Instant::now() + DEADLINE;
            loop {
                let text = client
                    .get(&url)
                    .send()
                    .await
                    .expect("edge")
                    .text()
                    .await
                    .expect("text");
                if check(&text) || tokio::time::Instant::now() >= deadline {
                    return text;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    metrics_until(&gateway, |text| {
        text.contains("llmgw_edge_policy_from_billing 1")
    })
    .await;
    billing.stop().await;

    // Traffic while billing is down: blocked prompts (never leave the edge)
    // and redacted + flagged ones (served).
    let mut expected = Vec::new();
    for i in 0..12 {
        let (status, request_id) = send(&gateway, &format!("forbidden-term #{i}")).await;
        assert_eq!(status, 400);
        expected.push((request_id, 1));
    }
    for i in 0..4 {
        let (status, request_id) = send(&gateway, &format!("Project Falcon canary-{i}")).await;
        assert_eq!(status, 200);
        expected.push((request_id, 2));
    }
    let text = metrics_until(&gateway, |text| {
        text.contains("llmgw_edge_audit_spooled_total 20")
            && !text.contains("llmgw_edge_audit_delivery_failures_total 0")
    })
    .await;
    assert!(
        text.contains("llmgw_edge_audit_delivered_total 0"),
        "{text}"
    );

    // Billing is back (same ports): everything arrives, each event once.
    let billing = PolicyBilling::start(
        database.url(),
        &dir,
        Some(grpc),
        Some(admin),
        input_policy(),
    )
    .await;
    let rows = wait_audited(&admin_at(billing.admin), &expected).await;
    for (request_id, count) in &expected {
        let got = &rows[request_id];
        assert_eq!(got.len(), *count, "{request_id}: {got:?}");
        let mut sequences: Vec<i64> = got
            .iter()
            .map(|row| row["sequence"].as_i64().expect("seq"))
            .collect();
        sequences.sort_unstable();
        assert_eq!(sequences, (0..*count as i64).collect::<Vec<_>>());
    }
    metrics_until(&gateway, |text| {
        text.contains("llmgw_edge_audit_spool_events 0")
    })
    .await;
    drop(gateway);
    billing.stop().await;
}

/// Billing unreachable for long: once the edge's audit spool is (nearly)
/// full, requests a policy applies to are refused (503) rather than served
/// unaudited; the events already spooled stay.
#[tokio::test]
async fn a_full_audit_spool_refuses_requests_rather_than_serve_them_unaudited() {
    let dir = scratch_dir("policy-audit-full");
    // A port that was just free: billing is never there.
    let dead = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let dead_url = format!("http://{}", dead.local_addr().expect("addr"));
    drop(dead);
    let gateway = Gateway::start_with({
        let dir = dir.clone();
        move |config| {
            with_input_policy(config);
            config.edge.billing_url = Some(dead_url);
            config.router.usage.spool_dir = Some(dir.join("spool"));
            config.edge.audit.spool_dir = Some(dir.join("audit-spool"));
            // Room for a handful of ~150-byte events.
            config.edge.audit.max_bytes = 1_500;
        }
    })
    .await;
    let mut statuses = Vec::new();
    for i in 0..40 {
        let (status, _) = send(&gateway, &format!("forbidden-term #{i}")).await;
        statuses.push(status);
        if status == 503 {
            break;
        }
    }
    let blocked = statuses.iter().filter(|&&status| status == 400).count();
    assert!(blocked >= 3, "{statuses:?}");
    assert_eq!(statuses.last(), Some(&503), "{statuses:?}");
    let response = gateway
        .chat(json!({"model": "mock", "messages": [{"role": "user", "content": "a clean prompt"}]}))
        .await;
    let (status, error) = crate::harness::error_of(response).await;
    assert_eq!(status, 503);
    assert_eq!(error["code"], "service_unavailable", "{error}");
    assert!(
        error["message"]
            .as_str()
            .expect("message")
            .contains("audit spool is full")
    );
    assert_eq!(gateway.mock_stats().await["requests_total"], 0);
    let metrics = gateway.metrics().await;
    assert!(
        metrics.contains(&format!("llmgw_edge_audit_spool_events {blocked}")),
        "{metrics}"
    );
}
