//! Usage-ledger ingest throughput into Postgres:
//! `cargo bench -p llmgw-billing --bench ingest`.
//!
//! Creates its own database (`llmgw-testdb`: on `LLMGW_TEST_POSTGRES`,
//! default `postgres://postgres@127.0.0.1:5432`) and drops it afterwards,
//! even on failure. Two runs, each with several concurrent senders sending batches
//! of 1000 events, as the routers' spools do: straight through the store
//! (`Store::record_usage`), then through the real gRPC service
//! (`Ledger.RecordUsage`), which adds protobuf and HTTP/2 on loopback.
//! Prints events/s and the per-batch latency.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use llmgw_billing::store::Store;
use llmgw_proto::billing_v1::ledger_client::LedgerClient;
use llmgw_proto::billing_v1::{RecordUsageRequest, UsageEvent};
use llmgw_testdb::{SERVER_ENV, TestDatabase};

const BATCH: usize = 1_000;
const SENDERS: usize = 4;
const BATCHES_PER_SENDER: usize = 25;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let database = TestDatabase::create("billing_bench_ingest")
        .await
        .with_context(|| format!("creating a database (set {SERVER_ENV})"))?;
    let result = bench(database.url()).await;
    // FORCE ends the pools' sessions (the service's included).
    let dropped = database.drop_database().await;
    result?;
    dropped?;
    Ok(())
}

async fn bench(url: &str) -> anyhow::Result<()> {
    let store = Store::connect(url).await?;
    store.migrate().await?;
    // Outside the timing: the first batch creates the month's partition.
    store.record_usage(&batch("warmup", 0)).await?;

    let shared = store.clone();
    let direct = measure("store", move |sender, n| {
        let store = shared.clone();
        async move {
            let recorded = store
                .record_usage(&batch("store", sender * 1_000 + n))
                .await?;
            anyhow::ensure!(recorded.inserted as usize == BATCH, "all new: {recorded:?}");
            Ok(())
        }
    })
    .await?;

    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = grpc.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let config = llmgw_billing::Config {
        database_url: Some(url.to_owned()),
        ..llmgw_billing::Config::default()
    };
    let service = tokio::spawn(llmgw_billing::run(config, grpc, admin, async move {
        let _ = stopped.await;
    }));
    let client = connect(&format!("http://{address}")).await?;
    let over_grpc = measure("grpc", move |sender, n| {
        let mut client = client.clone();
        async move {
            let events = batch("grpc", sender * 1_000 + n);
            let answer = client
                .record_usage(RecordUsageRequest { events })
                .await?
                .into_inner();
            anyhow::ensure!(answer.inserted as usize == BATCH, "all new: {answer:?}");
            Ok(())
        }
    })
    .await?;
    let _ = stop.send(());
    service.await??;

    println!(
        "\nledger ingest into Postgres, batches of {BATCH}, {SENDERS} concurrent senders:\n  \
         store: {direct:>8.0} events/s\n  gRPC:  {over_grpc:>8.0} events/s"
    );
    Ok(())
}

/// Runs SENDERS tasks of BATCHES_PER_SENDER calls of `send(sender, n)` and
/// gives events per second; prints the batch latencies.
async fn measure<F, Fut>(label: &str, send: F) -> anyhow::Result<f64>
where
    F: Fn(usize, usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let started = Instant::now();
    let mut tasks = Vec::new();
    for sender in 0..SENDERS {
        let send = send.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(BATCHES_PER_SENDER);
            for n in 0..BATCHES_PER_SENDER {
                let one = Instant::now();
                send(sender, n).await?;
                latencies.push(one.elapsed());
            }
            Ok::<_, anyhow::Error>(latencies)
        }));
    }
    let mut latencies: Vec<Duration> = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    let events = (SENDERS * BATCHES_PER_SENDER * BATCH) as f64;
    let rate = events / elapsed.as_secs_f64();
    println!(
        "{label}: {events} events in {elapsed:.2?}: {rate:.0} events/s; batch p50 {:.1?} p99 {:.1?}",
        at(0.5),
        at(0.99)
    );
    Ok(rate)
}

async fn connect(url: &str) -> anyhow::Result<LedgerClient<tonic::transport::Channel>> {
    // The service migrates and starts listening in the background.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match LedgerClient::connect(url.to_owned()).await {
            Ok(client) => return Ok(client),
            Err(error) if Instant::now() > deadline => return Err(error.into()),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// BATCH new events: unique request ids, 20 tenants × 5 keys, 4 models, now.
fn batch(run: &str, n: usize) -> Vec<UsageEvent> {
    let now = llmgw_billing::store::now_ms();
    let models = ["gpt-4o", "gpt-4o-mini", "claude-sonnet", "deepseek-chat"];
    (0..BATCH)
        .map(|i| {
            let tenant = i % 20;
            let model = models[i % models.len()];
            UsageEvent {
                request_id: format!("{run}-{n}-{i}-{}", uuid::Uuid::new_v4().simple()),
                attempt: 1,
                tenant: format!("tenant-{tenant}"),
                key_id: format!("key-{tenant}-{}", i % 5),
                model: model.to_owned(),
                route: model.to_owned(),
                provider: "openai".to_owned(),
                deployment: "openai-eu-1".to_owned(),
                upstream_model: model.to_owned(),
                prompt_tokens: 500 + (i as u64 % 1_000),
                completion_tokens: 120,
                cached_tokens: 64,
                reasoning_tokens: 0,
                estimated: false,
                input_price_per_mtok: "2.5".to_owned(),
                output_price_per_mtok: "10".to_owned(),
                cost_nano_usd: 2_450_000,
                status: "ok".to_owned(),
                finish_reason: "stop".to_owned(),
                ttft_ms: 180,
                duration_ms: 1_400,
                started_at_ms: now - 1_400,
                ended_at_ms: now,
                client_cancelled: false,
                traceparent: String::new(),
                ..UsageEvent::default()
            }
        })
        .collect()
}
