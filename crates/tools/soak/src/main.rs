//! `llmgw-soak`: runs the gateway as four processes (edge, router, billing,
//! quota) on its own Postgres database and its own redis-server, drives
//! mixed traffic with faults and client disconnects at the mock upstream,
//! kills and restarts processes on a schedule, then reconciles the ledger
//! with what the mock produced and reports memory and descriptor trends.
//! See README.md next to this crate.

mod cluster;
mod reconcile;
mod sampling;
mod traffic;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use llmgw_testdb::TestDatabase;
use tokio::time::Instant;

use cluster::{Cluster, KEY_PREFIX, Service};
use sampling::Sample;

#[derive(Parser, Debug)]
#[command(about = "Soak and fault harness for llmgw (four processes, Postgres, Redis).")]
struct Args {
    /// How long traffic runs, in seconds (default 30 minutes).
    #[arg(long, default_value_t = 1800)]
    duration_secs: u64,
    /// Two minutes, with a faster fault schedule.
    #[arg(long)]
    smoke: bool,
    /// Concurrent clients.
    #[arg(long, default_value_t = 12)]
    workers: usize,
    /// The `llmgw` binary (default: next to this one).
    #[arg(long)]
    llmgw: Option<PathBuf>,
    /// Where configs, spools and process logs go (default: a fresh temp dir).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Seconds between RSS and descriptor samples.
    #[arg(long, default_value_t = 5)]
    sample_secs: u64,
}

/// Set once: traffic and the schedule stop.
#[derive(Clone, Default)]
pub struct Stop(Arc<AtomicBool>);

impl Stop {
    pub fn is_stopped(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    fn stop(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Seconds between faults of each kind.
struct Schedule {
    router_kill: u64,
    billing_restart: u64,
    redis_restart: u64,
}

impl Schedule {
    fn for_run(duration: u64, smoke: bool) -> Schedule {
        if smoke {
            return Schedule {
                router_kill: 30,
                billing_restart: 45,
                redis_restart: 50,
            };
        }
        Schedule {
            router_kill: (duration / 12).max(30),
            billing_restart: (duration / 8).max(45),
            redis_restart: (duration / 6).max(60),
        }
    }
}

#[derive(Default)]
struct Faults {
    router_kills: Vec<f64>,
    billing_restarts: usize,
    redis_restarts: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let duration = if args.smoke { 120 } else { args.duration_secs };
    let llmgw = match args.llmgw {
        Some(path) => path,
        None => std::env::current_exe()?
            .parent()
            .context("the executable's directory")?
            .join("llmgw"),
    };
    anyhow::ensure!(
        llmgw.exists(),
        "{} not found: `cargo build -p llmgw` first, or pass --llmgw",
        llmgw.display()
    );
    let dir = args
        .dir
        .unwrap_or_else(|| std::env::temp_dir().join(format!("llmgw-soak-{}", std::process::id())));
    let database = TestDatabase::create("llmgw_soak")
        .await
        .context("creating the soak's Postgres database")?;
    let mut cluster = Cluster::new(llmgw, dir.clone(), database.url().to_owned())?;
    println!(
        "soak: {duration} s, {} workers, database {}, redis port {}, files in {}",
        args.workers,
        database.name(),
        cluster.ports.redis,
        dir.display()
    );
    cluster.start_all().await?;
    wait_ready(&cluster.edge_url()).await?;

    let begun = Instant::now();
    let stop = Stop::default();
    let log = traffic::Log::default();
    let traffic = tokio::spawn(traffic::run(
        cluster.edge_url(),
        args.workers,
        begun,
        stop.clone(),
        log.clone(),
    ));

    let schedule = Schedule::for_run(duration, args.smoke);
    let mut faults = Faults::default();
    let mut samples: HashMap<Service, Vec<Sample>> = HashMap::new();
    let end = begun + Duration::from_secs(duration);
    // Restarts stop a little before the end so the last ones settle.
    let quiet = duration.saturating_sub(15) as f64;
    let (mut next_router, mut next_billing, mut next_redis, mut next_sample) = (
        schedule.router_kill as f64,
        schedule.billing_restart as f64,
        schedule.redis_restart as f64,
        0.0,
    );
    while Instant::now() < end {
        let now = begun.elapsed().as_secs_f64();
        if now >= next_sample {
            for service in Service::GATEWAY {
                if let Some(pid) = cluster.pid(service)
                    && let Some(sample) = sampling::read(pid, now)
                {
                    samples.entry(service).or_default().push(sample);
                }
            }
            next_sample += args.sample_secs as f64;
        }
        if now >= next_router && now < quiet {
            println!("soak: {now:6.1} s  kill -9 router, restart (spool replay)");
            cluster.kill(Service::Router)?;
            faults.router_kills.push(begun.elapsed().as_secs_f64());
            cluster.start(Service::Router).await?;
            next_router += schedule.router_kill as f64;
        }
        if now >= next_billing && now < quiet {
            // Alternately SIGKILL and SIGTERM: both must lose nothing.
            let hard = faults.billing_restarts % 2 == 0;
            println!(
                "soak: {now:6.1} s  {} billing, restart",
                if hard { "kill -9" } else { "SIGTERM" }
            );
            if hard {
                cluster.kill(Service::Billing)?;
            } else {
                cluster.stop(Service::Billing).await?;
            }
            cluster.start(Service::Billing).await?;
            faults.billing_restarts += 1;
            next_billing += schedule.billing_restart as f64;
        }
        if now >= next_redis && now < quiet {
            println!("soak: {now:6.1} s  restart redis-server (counters lost)");
            cluster.stop(Service::Redis).await?;
            cluster.start(Service::Redis).await?;
            faults.redis_restarts += 1;
            next_redis += schedule.redis_restart as f64;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("soak: traffic stops; waiting for open requests and the spool");
    stop.stop();
    let _ = traffic.await;
    let sent = log.take();

    let pool = database.pool().await?;
    let productions = reconcile::fetch_productions(&cluster.mock_url()).await?;
    // Usage reaches the ledger through the router's spool: wait for it
    // (generously) until nothing is missing or the ledger stops changing.
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut verdict =
        reconcile::reconcile(&sent, &productions, &pool, &faults.router_kills).await?;
    while !verdict.missing.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(2)).await;
        verdict = reconcile::reconcile(&sent, &productions, &pool, &faults.router_kills).await?;
    }
    // Settles follow the answers; the quota's sets empty once they land.
    let prefix = format!("{KEY_PREFIX}-{}", cluster.ports.redis);
    let mut leases = reconcile::concurrency_leases(&cluster.redis_url(), &prefix).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while leases.1 > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
        leases = reconcile::concurrency_leases(&cluster.redis_url(), &prefix).await?;
    }
    pool.close().await;
    cluster.stop_all().await;

    report(&sent, &verdict, &faults, leases, &samples);
    let passed = verdict.clean() && leases.1 == 0;
    println!("\nverdict: {}", if passed { "PASS" } else { "FAIL" });
    if !passed {
        std::process::exit(1);
    }
    Ok(())
}

async fn wait_ready(edge: &str) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(response) = client.get(format!("{edge}/readyz")).send().await
            && response.status() == 200
        {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "the edge never became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn report(
    sent: &[traffic::Sent],
    verdict: &reconcile::Verdict,
    faults: &Faults,
    leases: (usize, u64),
    samples: &HashMap<Service, Vec<Sample>>,
) {
    let mut kinds: HashMap<&str, usize> = HashMap::new();
    let mut statuses: HashMap<u16, usize> = HashMap::new();
    for request in sent {
        *kinds.entry(request.kind.label()).or_default() += 1;
        *statuses.entry(request.status).or_default() += 1;
    }
    let mut kinds: Vec<_> = kinds.into_iter().collect();
    kinds.sort();
    let mut statuses: Vec<_> = statuses.into_iter().collect();
    statuses.sort();
    println!("\n== requests");
    println!("sent: {}  (by kind: {kinds:?})", sent.len());
    println!("client saw status (0 = no answer): {statuses:?}");
    println!("\n== faults injected");
    let injected: usize = sent
        .iter()
        .filter(|r| matches!(r.kind, traffic::Kind::Fault(_) | traffic::Kind::Disconnect))
        .count();
    println!("upstream faults and client disconnects asked for: {injected}");
    println!(
        "router kill -9 + restart: {}, billing restarts: {}, redis restarts: {}",
        faults.router_kills.len(),
        faults.billing_restarts,
        faults.redis_restarts
    );
    println!("\n== ledger reconciliation");
    println!("requests the mock saw: {}", verdict.mock_saw);
    println!(
        "exact (one row, tokens = mock's): {}  tokens reconciled: {}",
        verdict.exact, verdict.tokens_reconciled
    );
    println!("ledger rows by status: {:?}", verdict.by_status);
    println!(
        "in flight at a router kill -9: {} lost (never spooled), {} billed anyway",
        verdict.lost_with_killed_router, verdict.billed_despite_kill
    );
    println!(
        "client disconnects billed short of the mock: {} requests, {} tokens in flight when cut",
        verdict.disconnect_shortfall, verdict.disconnect_shortfall_tokens
    );
    println!(
        "missing: {}  duplicated: {}  mismatched: {}  rows the mock never saw: {}",
        verdict.missing.len(),
        verdict.duplicated.len(),
        verdict.mismatched.len(),
        verdict.unexplained_rows
    );
    if !verdict.mismatched_kinds.is_empty() {
        println!("mismatches by request kind: {:?}", verdict.mismatched_kinds);
    }
    for problem in verdict
        .missing
        .iter()
        .chain(&verdict.duplicated)
        .chain(&verdict.mismatched)
        .take(20)
    {
        println!("  {problem}");
    }
    println!("\n== quota");
    println!(
        "concurrency sets: {}, leases still held: {}",
        leases.0, leases.1
    );
    println!("\n== processes (latest incarnation, after 30 s warm-up)");
    for service in Service::GATEWAY {
        let Some(trend) = samples
            .get(&service)
            .and_then(|samples| sampling::trend(samples, 30.0))
        else {
            println!("{:8} no samples", service.name());
            continue;
        };
        println!(
            "{:8} {} samples over {:.0} s: RSS {} -> {} kB, slope {} kB/min; fds {} now, slope {} /min",
            service.name(),
            trend.samples,
            trend.window_secs,
            trend.rss_first_kb,
            trend.rss_last_kb,
            trend
                .rss_slope
                .map_or("-".to_owned(), |s| format!("{s:+.1}")),
            trend.fds_last,
            trend
                .fd_slope
                .map_or("-".to_owned(), |s| format!("{s:+.2}")),
        );
    }
}
