//! The usage spool through the real `LedgerClient` to a fake billing
//! `Ledger` served over gRPC on loopback: billing's answers map to the
//! spool's retry or reject, and the metrics keep their router names. The
//! spool's own behaviour (durability, replay, bounds) is tested in
//! `llmgw-spool`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use llmgw_proto::billing_v1::ledger_server::{Ledger, LedgerServer};
use llmgw_proto::billing_v1::{
    MonthToDateSpendRequest, MonthToDateSpendResponse, RecordUsageRequest, RecordUsageResponse,
    UsageEvent,
};
use llmgw_spool::SpoolConfig;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

use super::spool::LedgerDelivery;
use crate::metrics::Metrics;

/// What the fake billing saw.
#[derive(Default)]
struct LedgerState {
    /// Times each (request_id, attempt) was recorded.
    recorded: Mutex<HashMap<(String, u32), u32>>,
    /// Batches holding one of these request ids are refused as invalid.
    poison: HashSet<String>,
}

struct FakeLedger(Arc<LedgerState>);

#[tonic::async_trait]
impl Ledger for FakeLedger {
    async fn record_usage(
        &self,
        request: Request<RecordUsageRequest>,
    ) -> Result<Response<RecordUsageResponse>, Status> {
        let events = request.into_inner().events;
        if events
            .iter()
            .any(|event| self.0.poison.contains(&event.request_id))
        {
            return Err(Status::invalid_argument("tenant must not be empty"));
        }
        let mut recorded = self
            .0
            .recorded
            .lock()
            .map_err(|_| Status::internal("poisoned lock"))?;
        let (mut inserted, mut duplicates) = (0, 0);
        for event in events {
            let count = recorded
                .entry((event.request_id, event.attempt))
                .or_insert(0);
            *count += 1;
            if *count == 1 {
                inserted += 1;
            } else {
                duplicates += 1;
            }
        }
        Ok(Response::new(RecordUsageResponse {
            inserted,
            duplicates,
        }))
    }

    async fn month_to_date_spend(
        &self,
        _request: Request<MonthToDateSpendRequest>,
    ) -> Result<Response<MonthToDateSpendResponse>, Status> {
        Err(Status::unimplemented("not in this fake"))
    }
}

fn event(n: u64) -> UsageEvent {
    UsageEvent {
        request_id: format!("req_{n:010}"),
        attempt: 1,
        tenant: "acme-production".to_owned(),
        key_id: "key_7f3a9c2e41b8".to_owned(),
        model: "gpt-4o".to_owned(),
        cost_nano_usd: 8_755_000,
        status: "ok".to_owned(),
        started_at_ms: 1_767_225_600_000,
        ended_at_ms: 1_767_225_603_921,
        ..UsageEvent::default()
    }
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn usage_reaches_billing_over_grpc_retried_while_down_invalid_events_set_aside() {
    let dir = std::env::temp_dir().join(format!(
        "llmgw-usage-spool-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    // Billing is not listening yet: the lazily connected channel fails.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    drop(listener);
    let channel = llmgw_grpc::channel(&format!("http://{addr}")).expect("channel");
    let metrics = Metrics::new();
    let mut config = SpoolConfig::new("usage", &dir);
    config.flush_interval = Duration::from_millis(2);
    config.batch_size = 50;
    let (stop, stopping) = oneshot::channel::<()>();
    let (sink, stopped) = llmgw_spool::start(
        config,
        LedgerDelivery::new(channel),
        metrics.spool.clone(),
        async move {
            let _ = stopping.await;
        },
        Duration::from_secs(3),
    )
    .await
    .expect("start while billing is down");
    for n in 0..100 {
        sink.emit(event(n)).expect("emit");
    }
    wait_until("failed calls", || metrics.spool.failures.get() >= 2).await;
    assert_eq!(metrics.spool.delivered.get(), 0);

    // Billing comes up on that address; it refuses one event as invalid.
    let state = Arc::new(LedgerState {
        poison: HashSet::from([event(7).request_id]),
        ..LedgerState::default()
    });
    let listener = TcpListener::bind(addr).await.expect("rebind");
    let (server_stop, server_stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(LedgerServer::new(FakeLedger(state.clone())))
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
    let recorded = state.recorded.lock().expect("lock").clone();
    assert_eq!(recorded.len(), 99);
    assert!(recorded.values().all(|&times| times == 1));
    assert!(!recorded.contains_key(&(event(7).request_id, 1)));

    let text = metrics.render();
    for line in [
        "llmgw_router_usage_spool_events 0",
        "llmgw_router_usage_spool_bytes 0",
        "llmgw_router_usage_spool_oldest_age_seconds 0.0",
        "llmgw_router_usage_spooled_total 100",
        "llmgw_router_usage_delivered_total 99",
        "llmgw_router_usage_spool_full_total 0",
        "llmgw_router_usage_rejected_total 1",
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
    assert!(text.contains("llmgw_router_usage_delivery_failures_total "));
    let _ = server_stop.send(());
    let _ = server.await;
    let _ = std::fs::remove_dir_all(&dir);
}
