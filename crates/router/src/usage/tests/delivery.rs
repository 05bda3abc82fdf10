//! Delivery to billing: exactly once when all is well, retried through
//! outages, bounded when billing stays away, invalid events set aside.

use std::sync::atomic::Ordering;
use std::time::Duration;

use llmgw_proto::billing_v1::UsageEvent;
use prost::Message as _;
use tokio::net::TcpListener;

use super::super::segment::{self, Next};
use super::super::spool::EmitError;
use super::{
    Billing, Running, TempDir, config, event, free_addr, request_id, segments, wait_until,
};

#[tokio::test]
async fn every_event_is_delivered_once_and_acknowledged_segments_are_deleted() {
    let dir = TempDir::new("happy");
    let billing = Billing::start().await;
    let running = Running::start(config(dir.path()), billing.addr)
        .await
        .expect("start");
    running.emit_range(0..1000);
    wait_until("1000 delivered", 20, || running.delivered() == 1000).await;
    wait_until("depth back to zero", 10, || running.depth() == (0, 0)).await;
    assert_eq!(running.metrics.spool.oldest.seconds(), 0.0);
    // ~250 KB went through 4 KiB segments; only the one being written stays.
    assert!(
        segments(dir.path()).len() <= 2,
        "{:?}",
        segments(dir.path())
    );
    let text = running.metrics.render();
    for line in [
        "llmgw_router_usage_spool_events 0",
        "llmgw_router_usage_spool_bytes 0",
        "llmgw_router_usage_spool_oldest_age_seconds 0.0",
        "llmgw_router_usage_spooled_total 1000",
        "llmgw_router_usage_delivered_total 1000",
        "llmgw_router_usage_delivery_failures_total 0",
        "llmgw_router_usage_spool_full_total 0",
        "llmgw_router_usage_rejected_total 0",
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
    // Emitted right before shutdown: written and delivered by the drain.
    running.emit_range(1000..1100);
    running.stop().await;
    assert_eq!(billing.state.unique(), 1100);
    assert_eq!(billing.state.duplicates(), 0);

    // A restart finds everything acknowledged: nothing is sent again.
    let calls = billing.state.calls.load(Ordering::Relaxed);
    let running = Running::start(config(dir.path()), billing.addr)
        .await
        .expect("restart");
    assert_eq!(running.depth(), (0, 0));
    tokio::time::sleep(Duration::from_millis(200)).await;
    running.stop().await;
    assert_eq!(billing.state.calls.load(Ordering::Relaxed), calls);
    assert!(
        segments(dir.path()).len() <= 1,
        "{:?}",
        segments(dir.path())
    );
}

#[tokio::test]
async fn billing_down_at_start_gets_everything_once_it_is_up() {
    let dir = TempDir::new("down");
    let addr = free_addr().await;
    let running = Running::start(config(dir.path()), addr)
        .await
        .expect("start while billing is down");
    running.emit_range(0..200);
    wait_until("failed calls", 10, || {
        running.metrics.spool.failures.get() >= 2
    })
    .await;
    assert_eq!(running.depth().0, 200);
    wait_until("backlog age", 5, || {
        running.metrics.spool.oldest.seconds() > 0.0
    })
    .await;

    let listener = TcpListener::bind(addr)
        .await
        .expect("rebind the billing port");
    let billing = Billing::serve(listener, Default::default());
    wait_until("200 delivered", 20, || billing.state.unique() == 200).await;
    wait_until("depth back to zero", 10, || running.depth() == (0, 0)).await;
    running.stop().await;
    assert_eq!(billing.state.duplicates(), 0);
}

#[tokio::test]
async fn billing_errors_are_retried_until_it_records() {
    let dir = TempDir::new("errors");
    let billing = Billing::start().await;
    billing.state.failing.store(true, Ordering::Relaxed);
    let running = Running::start(config(dir.path()), billing.addr)
        .await
        .expect("start");
    running.emit_range(0..300);
    wait_until("failed calls", 10, || {
        running.metrics.spool.failures.get() >= 3
    })
    .await;
    assert_eq!(billing.state.unique(), 0);
    billing.state.failing.store(false, Ordering::Relaxed);
    wait_until("300 delivered", 20, || billing.state.unique() == 300).await;
    running.stop().await;
    assert_eq!(billing.state.duplicates(), 0);
}

#[tokio::test]
async fn a_full_spool_refuses_events_until_billing_catches_up() {
    let dir = TempDir::new("full");
    let billing = Billing::start().await;
    billing.state.failing.store(true, Ordering::Relaxed);
    let mut config = config(dir.path());
    config.max_bytes = 20 * segment::record_len(&event(0));
    let running = Running::start(config, billing.addr).await.expect("start");
    assert!(running.sink.has_room());
    let mut accepted = 0;
    while running.sink.emit(event(accepted)).is_ok() {
        accepted += 1;
        assert!(accepted <= 20, "the bound holds");
    }
    assert_eq!(accepted, 20);
    assert_eq!(running.sink.emit(event(99)), Err(EmitError::Full));
    assert!(!running.sink.has_room());
    assert_eq!(running.metrics.spool.full.get(), 2);

    billing.state.failing.store(false, Ordering::Relaxed);
    wait_until("room again", 20, || running.sink.has_room()).await;
    running
        .sink
        .emit(event(100))
        .expect("emit after catching up");
    wait_until("21 delivered", 20, || billing.state.unique() == 21).await;
    running.stop().await;
}

#[tokio::test]
async fn an_invalid_event_is_moved_to_rejected_and_the_rest_recorded() {
    let dir = TempDir::new("poison");
    let billing = Billing::start().await;
    billing
        .state
        .poison
        .lock()
        .expect("lock")
        .insert(request_id(7));
    let running = Running::start(config(dir.path()), billing.addr)
        .await
        .expect("start");
    running.emit_range(0..100);
    wait_until("99 delivered, 1 rejected", 20, || {
        running.delivered() == 99 && running.metrics.spool.rejected.get() == 1
    })
    .await;
    wait_until("depth back to zero", 10, || running.depth() == (0, 0)).await;
    running.stop().await;
    assert_eq!(billing.state.unique(), 99);
    assert!(!billing.state.has(&request_id(7)));

    let rejected: Vec<_> = std::fs::read_dir(dir.path().join(segment::REJECTED))
        .expect("rejected/ exists")
        .map(|entry| entry.expect("entry").path())
        .collect();
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    let mut file = std::fs::File::open(&rejected[0]).expect("open");
    let mut payload = Vec::new();
    let Next::Record(_) = segment::read_record(&mut file, &mut payload).expect("read") else {
        panic!("rejected/ holds a record");
    };
    let event = UsageEvent::decode(payload.as_slice()).expect("decode");
    assert_eq!(event.request_id, request_id(7));
    assert!(matches!(
        segment::read_record(&mut file, &mut payload),
        Ok(Next::End)
    ));
}
