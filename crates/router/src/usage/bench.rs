//! Entry points for `cargo bench -p llmgw-router --bench spool`
//! (`benches/spool.rs`): a real spool on disk, driven from outside the
//! crate. Not an API: hidden from docs, used by nothing else.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use llmgw_proto::billing_v1::UsageEvent;
use llmgw_proto::billing_v1::ledger_client::LedgerClient;
use tokio::sync::oneshot;

use super::spool::{self, EmitError, SpoolConfig, UsageSink};
use crate::metrics::Metrics;

pub struct SpoolBench {
    sink: UsageSink,
    metrics: Arc<Metrics>,
    stop: Option<oneshot::Sender<()>>,
    stopped: Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl SpoolBench {
    /// A spool in `dir` with the default configuration (and a bound large
    /// enough for the run) delivering to `billing_url`, which is connected
    /// lazily: an address nothing listens on measures the writer alone.
    pub async fn open(dir: &Path, billing_url: &str) -> anyhow::Result<SpoolBench> {
        let channel = llmgw_grpc::channel(billing_url)?;
        let metrics = Arc::new(Metrics::new());
        let (stop, stopping) = oneshot::channel::<()>();
        let mut config = SpoolConfig::new(dir);
        config.max_bytes = 8 << 30;
        let (sink, stopped) = spool::start(
            config,
            LedgerClient::new(channel),
            metrics.clone(),
            async move {
                let _ = stopping.await;
            },
            Duration::from_secs(5),
        )
        .await?;
        Ok(SpoolBench {
            sink,
            metrics,
            stop: Some(stop),
            stopped: Box::pin(stopped),
        })
    }

    pub fn emit(&self, event: UsageEvent) -> Result<(), EmitError> {
        self.sink.emit(event)
    }

    /// The admission check the router makes per request.
    pub fn has_room(&self) -> bool {
        self.sink.has_room()
    }

    /// Events written and fsynced so far.
    pub fn spooled(&self) -> u64 {
        self.metrics.spool.spooled.get()
    }

    /// Events acknowledged by billing so far.
    pub fn delivered(&self) -> u64 {
        self.metrics.spool.delivered.get()
    }

    /// Stops the spool as a router shutdown does.
    pub async fn close(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.stopped.await;
    }
}

/// `emit` on the sink of a router without billing.
pub fn emit_disabled(event: UsageEvent) -> Result<(), EmitError> {
    UsageSink::disabled().emit(event)
}

/// A usage event with realistic field sizes (~250 bytes encoded).
pub fn event(n: u64) -> UsageEvent {
    UsageEvent {
        request_id: format!("req_01JX9ZK3V6W8Y2Q4R7T5N{n:010}"),
        attempt: 1,
        tenant: "acme-production".to_owned(),
        key_id: "key_7f3a9c2e41b8".to_owned(),
        model: "gpt-4o".to_owned(),
        route: "gpt-4o".to_owned(),
        provider: "openai".to_owned(),
        deployment: "openai-eastus-2".to_owned(),
        upstream_model: "gpt-4o-2024-08-06".to_owned(),
        prompt_tokens: 1_234,
        completion_tokens: 567,
        cached_tokens: 256,
        reasoning_tokens: 0,
        estimated: false,
        input_price_per_mtok: "2.50".to_owned(),
        output_price_per_mtok: "10.00".to_owned(),
        cost_nano_usd: 8_755_000,
        status: "ok".to_owned(),
        finish_reason: "stop".to_owned(),
        ttft_ms: 412,
        duration_ms: 3_921,
        started_at_ms: 1_767_225_600_000,
        ended_at_ms: 1_767_225_603_921,
        client_cancelled: false,
    }
}
