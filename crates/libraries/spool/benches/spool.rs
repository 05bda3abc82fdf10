//! What the spool costs, on this machine's disk, through its public API:
//! `cargo bench -p llmgw-spool`. The spool lives under the system temp dir
//! (or `LLMGW_SPOOL_BENCH_DIR`), with its default settings (20 ms group
//! commit), spooling events shaped like the router's usage events. The
//! receiver is down except in the last run, so the figures are `emit` and
//! the writer alone.

use std::collections::HashSet;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use llmgw_spool::{Delivery, DeliveryError, EmitError, Sink, SpoolConfig, SpoolMetrics};
use tokio::sync::oneshot;

/// The router's usage event, field for field (~250 bytes encoded): the
/// spool's cost depends on the size of what it encodes.
#[derive(Clone, PartialEq, prost::Message)]
struct BenchEvent {
    #[prost(string, tag = "1")]
    request_id: String,
    #[prost(uint32, tag = "2")]
    attempt: u32,
    #[prost(string, tag = "3")]
    tenant: String,
    #[prost(string, tag = "4")]
    key_id: String,
    #[prost(string, tag = "5")]
    model: String,
    #[prost(string, tag = "6")]
    route: String,
    #[prost(string, tag = "7")]
    provider: String,
    #[prost(string, tag = "8")]
    deployment: String,
    #[prost(string, tag = "9")]
    upstream_model: String,
    #[prost(uint64, tag = "10")]
    prompt_tokens: u64,
    #[prost(uint64, tag = "11")]
    completion_tokens: u64,
    #[prost(uint64, tag = "12")]
    cached_tokens: u64,
    #[prost(uint64, tag = "13")]
    reasoning_tokens: u64,
    #[prost(bool, tag = "14")]
    estimated: bool,
    #[prost(string, tag = "15")]
    input_price_per_mtok: String,
    #[prost(string, tag = "16")]
    output_price_per_mtok: String,
    #[prost(uint64, tag = "17")]
    cost_nano_usd: u64,
    #[prost(string, tag = "18")]
    status: String,
    #[prost(string, tag = "19")]
    finish_reason: String,
    #[prost(uint64, tag = "20")]
    ttft_ms: u64,
    #[prost(uint64, tag = "21")]
    duration_ms: u64,
    #[prost(int64, tag = "22")]
    started_at_ms: i64,
    #[prost(int64, tag = "23")]
    ended_at_ms: i64,
    #[prost(bool, tag = "24")]
    client_cancelled: bool,
}

/// An event with realistic field sizes.
fn event(n: u64) -> BenchEvent {
    BenchEvent {
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

/// A receiver that records nothing: with `down`, every delivery fails
/// (retried with backoff, as with a billing outage); otherwise it only
/// counts distinct events.
#[derive(Clone, Default)]
struct Receiver {
    down: bool,
    seen: Arc<Mutex<HashSet<(String, u32)>>>,
}

impl Delivery for Receiver {
    type Event = BenchEvent;

    async fn deliver(&self, batch: &[BenchEvent]) -> Result<(), DeliveryError> {
        if self.down {
            return Err(DeliveryError::RetryLater("receiver down".to_owned()));
        }
        let mut seen = self
            .seen
            .lock()
            .map_err(|_| DeliveryError::RetryLater("lock".to_owned()))?;
        for event in batch {
            seen.insert((event.request_id.clone(), event.attempt));
        }
        Ok(())
    }

    fn span(event: &BenchEvent) -> tracing::Span {
        tracing::error_span!("bench_event", request_id = %event.request_id)
    }

    fn occurred_at_ms(event: &BenchEvent) -> Option<i64> {
        Some(event.ended_at_ms)
    }
}

/// A spool as an owner runs it: its sink, its metrics, its stop.
struct Running {
    sink: Sink<BenchEvent>,
    metrics: SpoolMetrics,
    stop: Option<oneshot::Sender<()>>,
    stopped: Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl Running {
    /// A spool in `dir` with the default configuration (and a bound large
    /// enough for the run) delivering to `receiver`.
    async fn open(dir: &Path, receiver: Receiver) -> anyhow::Result<Running> {
        let metrics = SpoolMetrics::default();
        let (stop, stopping) = oneshot::channel::<()>();
        let mut config = SpoolConfig::new("bench", dir);
        config.max_bytes = 8 << 30;
        let (sink, stopped) = llmgw_spool::start(
            config,
            receiver,
            metrics.clone(),
            async move {
                let _ = stopping.await;
            },
            Duration::from_secs(5),
        )
        .await?;
        Ok(Running {
            sink,
            metrics,
            stop: Some(stop),
            stopped: Box::pin(stopped),
        })
    }

    fn emit(&self, event: BenchEvent) -> Result<(), EmitError> {
        self.sink.emit(event)
    }

    /// Events written and fsynced so far.
    fn spooled(&self) -> u64 {
        self.metrics.spooled.get()
    }

    /// Stops the spool as an owner's shutdown does.
    async fn close(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.stopped.await;
    }
}

/// CPU time of this process: the sum over its threads of
/// `/proc/self/task/*/schedstat` (Linux, nanoseconds). Threads that ended
/// are not counted; none ends while a run is measured.
fn cpu_time() -> Option<Duration> {
    let mut total = 0u64;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let stat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
        total += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(Duration::from_nanos(total))
}

fn cpu_per_event(before: Option<Duration>, events: u64) -> String {
    match (before, cpu_time()) {
        (Some(before), Some(after)) => {
            let us = (after - before).as_secs_f64() * 1e6 / events as f64;
            format!("{us:.2} µs")
        }
        _ => "n/a".to_owned(),
    }
}

fn events(from: u64, count: u64) -> Vec<BenchEvent> {
    (from..from + count).map(event).collect()
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !done() {
        anyhow::ensure!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(())
}

/// Everything queued at once: the caller's cost of `emit`, and how fast the
/// writer makes events durable when it is the bottleneck.
async fn burst(dir: &Path, receiver: Receiver, count: u64) -> anyhow::Result<()> {
    let bench = Running::open(dir, receiver).await?;
    let batch = events(0, count);
    let cpu = cpu_time();
    let started = Instant::now();
    for event in batch {
        bench.emit(event)?;
    }
    let emitted = started.elapsed();
    wait_for("the burst to be durable", || bench.spooled() == count).await?;
    let durable = started.elapsed();
    println!(
        "  burst of {count}: emit {:>6.0} ns/event (caller); durable after {:.2} s = {:>8.0} events/s; CPU {} per event (all threads)",
        emitted.as_nanos() as f64 / count as f64,
        durable.as_secs_f64(),
        count as f64 / durable.as_secs_f64(),
        cpu_per_event(cpu, count),
    );
    bench.close().await;
    Ok(())
}

/// A steady load, as a busy router produces it: each event built right
/// before its `emit` (as the relay does), CPU per event including the
/// writer's commits (at most 50 fsyncs a second).
async fn steady(dir: &Path, receiver: Receiver, per_second: u64, secs: u64) -> anyhow::Result<()> {
    let bench = Running::open(dir, receiver).await?;
    let ticks = secs * 100;
    let per_tick = per_second / 100;
    let mut interval = tokio::time::interval(Duration::from_millis(10));
    let mut building = Duration::ZERO;
    let mut admitting = Duration::ZERO;
    let mut emitting = Duration::ZERO;
    let cpu = cpu_time();
    for tick in 0..ticks {
        interval.tick().await;
        for n in tick * per_tick..(tick + 1) * per_tick {
            let started = Instant::now();
            let event = event(n);
            let built = Instant::now();
            let admitted = bench.sink.has_room();
            let checked = Instant::now();
            if admitted {
                bench.emit(event)?;
            }
            let emitted = Instant::now();
            building += built - started;
            admitting += checked - built;
            emitting += emitted - checked;
        }
    }
    let total = ticks * per_tick;
    wait_for("the steady load to be durable", || bench.spooled() == total).await?;
    let per = |spent: Duration| spent.as_nanos() as f64 / total as f64;
    println!(
        "  steady {per_second} events/s for {secs} s: CPU {} per event (all threads, building it included); \
         caller: has_room {:.0} ns, emit {:.0} ns (building the event {:.0} ns)",
        cpu_per_event(cpu, total),
        per(admitting),
        per(emitting),
        per(building),
    );
    bench.close().await;
    Ok(())
}

/// Time from `emit` to durable for a lone event: one commit (an fsync).
async fn latency(dir: &Path, receiver: Receiver) -> anyhow::Result<()> {
    let bench = Running::open(dir, receiver).await?;
    let mut samples = Vec::new();
    for n in 0..50u64 {
        // Past the group-commit interval, so the commit starts at once.
        tokio::time::sleep(Duration::from_millis(25)).await;
        let started = Instant::now();
        bench.emit(event(n))?;
        wait_for("one event to be durable", || bench.spooled() == n + 1).await?;
        samples.push(started.elapsed());
    }
    samples.sort();
    println!(
        "  lone event, emit to durable: median {:.2} ms, max {:.2} ms (one write + fdatasync)",
        samples[samples.len() / 2].as_secs_f64() * 1e3,
        samples[samples.len() - 1].as_secs_f64() * 1e3,
    );
    bench.close().await;
    Ok(())
}

/// Emit → disk → delivery to an in-process receiver that only counts (no
/// network: the figure is the spool's read-back and bookkeeping).
async fn delivery(dir: &Path, count: u64) -> anyhow::Result<()> {
    let receiver = Receiver::default();
    let bench = Running::open(dir, receiver.clone()).await?;
    let batch = events(0, count);
    let started = Instant::now();
    for event in batch {
        bench.emit(event)?;
    }
    wait_for("every event delivered", || {
        bench.metrics.delivered.get() == count
    })
    .await?;
    let elapsed = started.elapsed();
    let recorded = receiver.seen.lock().map(|seen| seen.len()).unwrap_or(0);
    println!(
        "  burst of {count} delivered in batches of 500: {:.2} s = {:>8.0} events/s ({recorded} recorded by the receiver)",
        elapsed.as_secs_f64(),
        count as f64 / elapsed.as_secs_f64(),
    );
    bench.close().await;
    Ok(())
}

fn bench_dir() -> PathBuf {
    let base =
        std::env::var_os("LLMGW_SPOOL_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    base.join(format!("llmgw-spool-bench-{}", std::process::id()))
}

async fn run(root: &Path) -> anyhow::Result<()> {
    let down = Receiver {
        down: true,
        ..Receiver::default()
    };
    println!("spool, in {}", root.display());
    let started = Instant::now();
    let mut discarded = 0u64;
    let disabled = Sink::<BenchEvent>::disabled();
    for n in 0..100_000 {
        discarded += u64::from(disabled.emit(event(n)).is_ok());
    }
    println!(
        "  disabled sink: emit + building the event {:.0} ns ({discarded} discarded)",
        started.elapsed().as_nanos() as f64 / 100_000.0
    );
    burst(&root.join("burst"), down.clone(), 200_000).await?;
    steady(&root.join("steady"), down.clone(), 10_000, 3).await?;
    latency(&root.join("latency"), down).await?;
    delivery(&root.join("delivery"), 200_000).await?;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let root = bench_dir();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(run(&root));
    let _ = std::fs::remove_dir_all(&root);
    result
}
