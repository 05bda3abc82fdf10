//! Tests of the spool against a real disk and an in-memory receiver.

mod delivery;
mod durability;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::{Delivery, DeliveryError, Sink, SpoolConfig, SpoolMetrics};

/// A directory under the system temp dir, removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let unique = format!(
            "llmgw-spool-{name}-{}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            fastrand::u64(..)
        );
        TempDir(std::env::temp_dir().join(unique))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The event the tests spool: an id the receiver dedupes on, a time, and a
/// body that gives it a realistic size (~250 bytes encoded).
#[derive(Clone, PartialEq, prost::Message)]
pub struct TestEvent {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(int64, tag = "2")]
    pub at_ms: i64,
    #[prost(string, tag = "3")]
    pub body: String,
}

pub fn event(n: u64) -> TestEvent {
    TestEvent {
        id: id(n),
        at_ms: 1_767_225_600_000 + n as i64,
        body: "x".repeat(220),
    }
}

pub fn id(n: u64) -> String {
    format!("event-{n:010}")
}

/// What the in-memory receiver saw, and how it should answer.
#[derive(Default)]
pub struct Received {
    /// Times each event id was recorded.
    pub recorded: Mutex<HashMap<String, u32>>,
    pub calls: AtomicU64,
    /// Answer "retry later" to every call (the receiver is down).
    pub failing: AtomicBool,
    /// Batches holding one of these ids are refused as invalid.
    pub poison: Mutex<HashSet<String>>,
}

impl Received {
    pub fn unique(&self) -> usize {
        self.recorded.lock().map_or(0, |recorded| recorded.len())
    }

    pub fn duplicates(&self) -> u32 {
        self.recorded
            .lock()
            .map_or(0, |recorded| recorded.values().map(|n| n - 1).sum())
    }

    pub fn has(&self, id: &str) -> bool {
        self.recorded
            .lock()
            .is_ok_and(|recorded| recorded.contains_key(id))
    }

    fn record(&self, batch: &[TestEvent]) -> Result<(), DeliveryError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if self.failing.load(Ordering::Relaxed) {
            return Err(DeliveryError::RetryLater("receiver down".to_owned()));
        }
        let poison = self.poison.lock().expect("poison lock");
        if batch.iter().any(|event| poison.contains(&event.id)) {
            return Err(DeliveryError::Invalid("id is poisoned".to_owned()));
        }
        let mut recorded = self.recorded.lock().expect("recorded lock");
        for event in batch {
            *recorded.entry(event.id.clone()).or_insert(0) += 1;
        }
        Ok(())
    }
}

/// A receiver in memory, all or nothing per batch like a real one.
#[derive(Clone, Default)]
pub struct TestDelivery(pub Arc<Received>);

impl Delivery for TestDelivery {
    type Event = TestEvent;

    async fn deliver(&self, batch: &[TestEvent]) -> Result<(), DeliveryError> {
        self.0.record(batch)
    }

    fn span(event: &TestEvent) -> tracing::Span {
        tracing::error_span!("test_event", id = %event.id)
    }

    fn occurred_at_ms(event: &TestEvent) -> Option<i64> {
        Some(event.at_ms).filter(|&ms| ms > 0)
    }
}

/// Small segments and fast commits, so that tests rotate and finish quickly.
pub fn config(dir: &Path) -> SpoolConfig {
    SpoolConfig {
        name: "test",
        dir: dir.to_owned(),
        max_bytes: 1 << 20,
        segment_bytes: 4096,
        flush_interval: Duration::from_millis(2),
        batch_size: 50,
    }
}

/// A running spool and the means to stop it.
pub struct Running {
    pub sink: Sink<TestEvent>,
    pub metrics: SpoolMetrics,
    stop: Option<oneshot::Sender<()>>,
    stopped: Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl Running {
    pub async fn start(config: SpoolConfig, receiver: &Arc<Received>) -> anyhow::Result<Running> {
        Running::start_draining(config, receiver, Duration::from_secs(3)).await
    }

    /// With `drain_deadline`: short when the receiver is down on purpose.
    pub async fn start_draining(
        config: SpoolConfig,
        receiver: &Arc<Received>,
        drain_deadline: Duration,
    ) -> anyhow::Result<Running> {
        let metrics = SpoolMetrics::default();
        let (stop, stopping) = oneshot::channel::<()>();
        let (sink, stopped) = crate::start(
            config,
            TestDelivery(receiver.clone()),
            metrics.clone(),
            async move {
                let _ = stopping.await;
            },
            drain_deadline,
        )
        .await?;
        Ok(Running {
            sink,
            metrics,
            stop: Some(stop),
            stopped: Box::pin(stopped),
        })
    }

    /// Shuts down as the owner does, and waits for the spool to stop.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(20), &mut self.stopped)
            .await
            .expect("spool stops within its drain deadline");
    }

    pub fn emit_range(&self, range: std::ops::Range<u64>) {
        for n in range {
            self.sink.emit(event(n)).expect("emit");
        }
    }

    pub fn delivered(&self) -> u64 {
        self.metrics.delivered.get()
    }

    pub fn depth(&self) -> (i64, i64) {
        (self.metrics.events.get(), self.metrics.bytes.get())
    }
}

/// A receiver that is down until told otherwise.
pub fn down() -> Arc<Received> {
    let received = Arc::new(Received::default());
    received.failing.store(true, Ordering::Relaxed);
    received
}

/// Polls `done` until it holds, or panics after `secs` seconds.
pub async fn wait_until(what: &str, secs: u64, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub fn segments(dir: &Path) -> Vec<u64> {
    crate::segment::list_segments(dir).expect("list segments")
}
