//! What the usage spool costs, on this machine's disk:
//! `cargo bench -p llmgw-router --bench spool`. The spool lives under the
//! system temp dir (or `LLMGW_SPOOL_BENCH_DIR`), with its default settings
//! (20 ms group commit). Billing is unreachable except in the last run, so
//! the figures are `emit` and the writer alone.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use llmgw_proto::billing_v1::ledger_server::{Ledger, LedgerServer};
use llmgw_proto::billing_v1::{
    MonthToDateSpendRequest, MonthToDateSpendResponse, RecordUsageRequest, RecordUsageResponse,
    UsageEvent,
};
use llmgw_router::microbench::spool::{self, SpoolBench};
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

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

fn events(from: u64, count: u64) -> Vec<UsageEvent> {
    (from..from + count).map(spool::event).collect()
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
async fn burst(dir: &Path, billing: &str, count: u64) -> anyhow::Result<()> {
    let bench = SpoolBench::open(dir, billing).await?;
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
async fn steady(dir: &Path, billing: &str, per_second: u64, secs: u64) -> anyhow::Result<()> {
    let bench = SpoolBench::open(dir, billing).await?;
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
            let event = spool::event(n);
            let built = Instant::now();
            let admitted = bench.has_room();
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
async fn latency(dir: &Path, billing: &str) -> anyhow::Result<()> {
    let bench = SpoolBench::open(dir, billing).await?;
    let mut samples = Vec::new();
    for n in 0..50u64 {
        // Past the group-commit interval, so the commit starts at once.
        tokio::time::sleep(Duration::from_millis(25)).await;
        let started = Instant::now();
        bench.emit(spool::event(n))?;
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

#[derive(Clone, Default)]
struct CountingLedger(Arc<Mutex<HashSet<(String, u32)>>>);

#[tonic::async_trait]
impl Ledger for CountingLedger {
    async fn record_usage(
        &self,
        request: Request<RecordUsageRequest>,
    ) -> Result<Response<RecordUsageResponse>, Status> {
        let mut seen = self.0.lock().map_err(|_| Status::internal("lock"))?;
        let mut inserted = 0;
        for event in request.into_inner().events {
            inserted += u32::from(seen.insert((event.request_id, event.attempt)));
        }
        Ok(Response::new(RecordUsageResponse {
            inserted,
            duplicates: 0,
        }))
    }

    async fn month_to_date_spend(
        &self,
        _request: Request<MonthToDateSpendRequest>,
    ) -> Result<Response<MonthToDateSpendResponse>, Status> {
        Err(Status::unimplemented("bench"))
    }
}

/// Emit → disk → RecordUsage to an in-process billing that only counts.
async fn delivery(dir: &Path, count: u64) -> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let ledger = CountingLedger::default();
    let server = tonic::transport::Server::builder()
        .add_service(LedgerServer::new(ledger.clone()))
        .serve_with_incoming(TcpIncoming::from(listener));
    let server = tokio::spawn(server);
    let bench = SpoolBench::open(dir, &format!("http://{addr}")).await?;
    let batch = events(0, count);
    let started = Instant::now();
    for event in batch {
        bench.emit(event)?;
    }
    wait_for("every event delivered", || bench.delivered() == count).await?;
    let elapsed = started.elapsed();
    let recorded = ledger.0.lock().map(|seen| seen.len()).unwrap_or(0);
    println!(
        "  burst of {count} delivered in batches of 500: {:.2} s = {:>8.0} events/s ({recorded} recorded by billing)",
        elapsed.as_secs_f64(),
        count as f64 / elapsed.as_secs_f64(),
    );
    bench.close().await;
    server.abort();
    Ok(())
}

fn bench_dir() -> PathBuf {
    let base =
        std::env::var_os("LLMGW_SPOOL_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    base.join(format!("llmgw-spool-bench-{}", std::process::id()))
}

async fn run(root: &Path) -> anyhow::Result<()> {
    // Nothing listens on port 9 (discard) here: billing stays unreachable.
    let down = "http://127.0.0.1:9";
    println!("usage spool, in {}", root.display());
    let started = Instant::now();
    let mut discarded = 0u64;
    for n in 0..100_000 {
        discarded += u64::from(spool::emit_disabled(spool::event(n)).is_ok());
    }
    println!(
        "  disabled sink: emit + building the event {:.0} ns ({discarded} discarded)",
        started.elapsed().as_nanos() as f64 / 100_000.0
    );
    burst(&root.join("burst"), down, 200_000).await?;
    steady(&root.join("steady"), down, 10_000, 3).await?;
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
