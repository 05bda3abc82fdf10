//! Tests of the usage spool against a real disk and a fake billing `Ledger`
//! served over gRPC on loopback.

mod delivery;
mod durability;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use llmgw_proto::billing_v1::ledger_client::LedgerClient;
use llmgw_proto::billing_v1::ledger_server::{Ledger, LedgerServer};
use llmgw_proto::billing_v1::{
    MonthToDateSpendRequest, MonthToDateSpendResponse, RecordUsageRequest, RecordUsageResponse,
    UsageEvent,
};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

use super::spool::{self, SpoolConfig, UsageSink};
use crate::metrics::Metrics;

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

/// What the fake billing saw, and how it should answer.
#[derive(Default)]
pub struct LedgerState {
    /// Times each (request_id, attempt) was recorded.
    pub recorded: Mutex<HashMap<(String, u32), u32>>,
    pub calls: AtomicU64,
    /// Answer Unavailable to every call.
    pub failing: AtomicBool,
    /// Batches holding one of these request ids are refused as invalid.
    pub poison: Mutex<HashSet<String>>,
}

impl LedgerState {
    pub fn unique(&self) -> usize {
        self.recorded.lock().map_or(0, |recorded| recorded.len())
    }

    pub fn duplicates(&self) -> u32 {
        self.recorded
            .lock()
            .map_or(0, |recorded| recorded.values().map(|n| n - 1).sum())
    }

    pub fn has(&self, request_id: &str) -> bool {
        self.recorded
            .lock()
            .is_ok_and(|recorded| recorded.contains_key(&(request_id.to_owned(), 1)))
    }
}

struct FakeLedger(Arc<LedgerState>);

#[tonic::async_trait]
impl Ledger for FakeLedger {
    async fn record_usage(
        &self,
        request: Request<RecordUsageRequest>,
    ) -> Result<Response<RecordUsageResponse>, Status> {
        let state = &self.0;
        state.calls.fetch_add(1, Ordering::Relaxed);
        if state.failing.load(Ordering::Relaxed) {
            return Err(Status::unavailable("billing database down"));
        }
        let events = request.into_inner().events;
        let poisoned = state
            .poison
            .lock()
            .map_err(|_| Status::internal("poisoned lock"))?;
        if events
            .iter()
            .any(|event| poisoned.contains(&event.request_id))
        {
            return Err(Status::invalid_argument("tenant must not be empty"));
        }
        drop(poisoned);
        let mut recorded = state
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

/// A fake billing serving on `listener` until dropped.
pub struct Billing {
    pub state: Arc<LedgerState>,
    pub addr: SocketAddr,
    _stop: oneshot::Sender<()>,
}

impl Billing {
    pub async fn start() -> Billing {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        Billing::serve(listener, Arc::default())
    }

    pub fn serve(listener: TcpListener, state: Arc<LedgerState>) -> Billing {
        let addr = listener.local_addr().expect("local addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let service = LedgerServer::new(FakeLedger(state.clone()));
        tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(TcpIncoming::from(listener), async {
                    let _ = stopped.await;
                })
                .await;
        });
        Billing {
            state,
            addr,
            _stop: stop,
        }
    }
}

/// An address nothing listens on (yet).
pub async fn free_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("local addr")
}

/// Small segments and fast commits, so that tests rotate and finish quickly.
pub fn config(dir: &Path) -> SpoolConfig {
    SpoolConfig {
        dir: dir.to_owned(),
        max_bytes: 1 << 20,
        segment_bytes: 4096,
        flush_interval: Duration::from_millis(2),
        batch_size: 50,
    }
}

/// A running spool and the means to stop it.
pub struct Running {
    pub sink: UsageSink,
    pub metrics: Arc<Metrics>,
    stop: Option<oneshot::Sender<()>>,
    stopped: Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl Running {
    pub async fn start(config: SpoolConfig, billing: SocketAddr) -> anyhow::Result<Running> {
        Running::start_draining(config, billing, Duration::from_secs(3)).await
    }

    /// With `drain_deadline`: short when billing is down on purpose.
    pub async fn start_draining(
        config: SpoolConfig,
        billing: SocketAddr,
        drain_deadline: Duration,
    ) -> anyhow::Result<Running> {
        let channel = llmgw_grpc::channel(&format!("http://{billing}"))?;
        let metrics = Arc::new(Metrics::new());
        let (stop, stopping) = oneshot::channel::<()>();
        let (sink, stopped) = spool::start(
            config,
            LedgerClient::new(channel),
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

    /// Shuts down as the router does, and waits for the spool to stop.
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
        self.metrics.spool.delivered.get()
    }

    pub fn depth(&self) -> (i64, i64) {
        (
            self.metrics.spool.events.get(),
            self.metrics.spool.bytes.get(),
        )
    }
}

pub fn event(n: u64) -> UsageEvent {
    super::bench::event(n)
}

pub fn request_id(n: u64) -> String {
    event(n).request_id
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
    super::segment::list_segments(dir).expect("list segments")
}
