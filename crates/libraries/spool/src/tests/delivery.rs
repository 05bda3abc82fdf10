//! Delivery: exactly once when all is well, retried through outages,
//! bounded when the receiver stays away, invalid events set aside.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use prometheus_client::registry::Registry;
use prost::Message as _;

use super::{Received, Running, TempDir, TestEvent, config, down, event, id, segments, wait_until};
use crate::EmitError;
use crate::segment::{self, Next};

#[tokio::test]
async fn every_event_is_delivered_once_and_acknowledged_segments_are_deleted() {
    let dir = TempDir::new("happy");
    let receiver = Arc::new(Received::default());
    let running = Running::start(config(dir.path()), &receiver)
        .await
        .expect("start");
    let mut registry = Registry::with_prefix("owner");
    running
        .metrics
        .register(registry.sub_registry_with_prefix("things"));
    running.emit_range(0..1000);
    wait_until("1000 delivered", 20, || running.delivered() == 1000).await;
    wait_until("depth back to zero", 10, || running.depth() == (0, 0)).await;
    assert_eq!(running.metrics.oldest.seconds(), 0.0);
    // ~250 KB went through 4 KiB segments; only the one being written stays.
    assert!(
        segments(dir.path()).len() <= 2,
        "{:?}",
        segments(dir.path())
    );
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
    for line in [
        "owner_things_spool_events 0",
        "owner_things_spool_bytes 0",
        "owner_things_spool_oldest_age_seconds 0.0",
        "owner_things_spooled_total 1000",
        "owner_things_delivered_total 1000",
        "owner_things_delivery_failures_total 0",
        "owner_things_spool_full_total 0",
        "owner_things_rejected_total 0",
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
    // Emitted right before shutdown: written and delivered by the drain.
    running.emit_range(1000..1100);
    running.stop().await;
    assert_eq!(receiver.unique(), 1100);
    assert_eq!(receiver.duplicates(), 0);

    // A restart finds everything acknowledged: nothing is sent again.
    let calls = receiver.calls.load(Ordering::Relaxed);
    let running = Running::start(config(dir.path()), &receiver)
        .await
        .expect("restart");
    assert_eq!(running.depth(), (0, 0));
    tokio::time::sleep(Duration::from_millis(200)).await;
    running.stop().await;
    assert_eq!(receiver.calls.load(Ordering::Relaxed), calls);
    assert!(
        segments(dir.path()).len() <= 1,
        "{:?}",
        segments(dir.path())
    );
}

#[tokio::test]
async fn a_receiver_down_at_start_gets_everything_once_it_is_back() {
    let dir = TempDir::new("down");
    let receiver = down();
    let running = Running::start(config(dir.path()), &receiver)
        .await
        .expect("start while the receiver is down");
    running.emit_range(0..200);
    wait_until("failed calls", 10, || running.metrics.failures.get() >= 2).await;
    assert_eq!(running.depth().0, 200);
    assert_eq!(receiver.unique(), 0);
    // The events are dated 2026-01-01: the backlog is that old.
    assert!(running.metrics.oldest.seconds() > 0.0);

    receiver.failing.store(false, Ordering::Relaxed);
    wait_until("200 delivered", 20, || receiver.unique() == 200).await;
    wait_until("depth back to zero", 10, || running.depth() == (0, 0)).await;
    assert_eq!(running.metrics.oldest.seconds(), 0.0);
    running.stop().await;
    assert_eq!(receiver.duplicates(), 0);
}

#[tokio::test]
async fn a_receiver_failing_mid_run_gets_the_rest_once_it_recovers() {
    let dir = TempDir::new("errors");
    let receiver = Arc::new(Received::default());
    let running = Running::start(config(dir.path()), &receiver)
        .await
        .expect("start");
    running.emit_range(0..100);
    wait_until("100 delivered", 20, || receiver.unique() == 100).await;
    receiver.failing.store(true, Ordering::Relaxed);
    running.emit_range(100..300);
    wait_until("failed calls", 10, || running.metrics.failures.get() >= 3).await;
    assert_eq!(receiver.unique(), 100);
    receiver.failing.store(false, Ordering::Relaxed);
    wait_until("300 delivered", 20, || receiver.unique() == 300).await;
    running.stop().await;
    assert_eq!(receiver.duplicates(), 0);
}

#[tokio::test]
async fn a_full_spool_refuses_events_until_the_receiver_catches_up() {
    let dir = TempDir::new("full");
    let receiver = down();
    let mut config = config(dir.path());
    config.max_bytes = 20 * segment::record_len(&event(0));
    let running = Running::start(config, &receiver).await.expect("start");
    assert!(running.sink.has_room());
    let mut accepted = 0;
    while running.sink.emit(event(accepted)).is_ok() {
        accepted += 1;
        assert!(accepted <= 20, "the bound holds");
    }
    assert_eq!(accepted, 20);
    assert_eq!(running.sink.emit(event(99)), Err(EmitError::Full));
    assert!(!running.sink.has_room());
    assert_eq!(running.metrics.full.get(), 2);

    receiver.failing.store(false, Ordering::Relaxed);
    wait_until("room again", 20, || running.sink.has_room()).await;
    running
        .sink
        .emit(event(100))
        .expect("emit after catching up");
    wait_until("21 delivered", 20, || receiver.unique() == 21).await;
    running.stop().await;
}

#[tokio::test]
async fn an_invalid_event_is_moved_to_rejected_and_the_rest_recorded() {
    let dir = TempDir::new("poison");
    let receiver = Arc::new(Received::default());
    receiver.poison.lock().expect("lock").insert(id(7));
    let running = Running::start(config(dir.path()), &receiver)
        .await
        .expect("start");
    running.emit_range(0..100);
    wait_until("99 delivered, 1 rejected", 20, || {
        running.delivered() == 99 && running.metrics.rejected.get() == 1
    })
    .await;
    wait_until("depth back to zero", 10, || running.depth() == (0, 0)).await;
    running.stop().await;
    assert_eq!(receiver.unique(), 99);
    assert!(!receiver.has(&id(7)));

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
    let event = TestEvent::decode(payload.as_slice()).expect("decode");
    assert_eq!(event.id, id(7));
    assert!(matches!(
        segment::read_record(&mut file, &mut payload),
        Ok(Next::End)
    ));
}
