//! `llmgw-bench`: closed-loop load generator for `POST {url}/chat/completions`
//! (or Anthropic's `POST {url}/messages` with `--api messages`).
//!
//! One invocation = one run at a fixed concurrency and mode. It prints one
//! table row (or one JSON object with `--json`); `bench/run.sh` drives the
//! matrix of scenarios. Timings live here and not in tests because they depend
//! on the machine and would make tests flaky.

mod load;
mod procstat;
mod report;

use anyhow::{Context, Result, ensure};
use clap::Parser;
use load::{Api, PhaseResult, StopAt, Target, TargetConfig};
use procstat::{Memory, Proc};
use report::{CpuUsage, Report, RunInfo};
use std::sync::Arc;
use std::time::Duration;

/// Used when neither --requests nor --duration-secs is given.
const DEFAULT_REQUESTS: u64 = 1000;

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Closed-loop load generator for OpenAI-compatible chat completions"
)]
struct Args {
    /// Base URL, e.g. http://127.0.0.1:8080/v1 (requests go to {url}/chat/completions).
    #[arg(long, env = "LLMGW_BENCH_URL")]
    url: String,
    /// Bearer token sent as `Authorization: Bearer KEY`.
    #[arg(long, env = "LLMGW_BENCH_KEY", hide_env_values = true)]
    key: Option<String>,
    /// Model name in the request body.
    #[arg(long, default_value = "bench")]
    model: String,
    /// Number of workers, each with one request in flight.
    #[arg(long, short = 'c', default_value_t = 1)]
    concurrency: usize,
    /// Total measured requests, shared by all workers.
    #[arg(long, short = 'n')]
    requests: Option<u64>,
    /// Stop the measured phase after this long (with --requests: whichever first).
    #[arg(long)]
    duration_secs: Option<f64>,
    /// Unmeasured requests sent first (opens connections, warms caches).
    #[arg(long, default_value_t = 200)]
    warmup: u64,
    /// Request SSE streaming (with usage in the final chunk).
    #[arg(long)]
    stream: bool,
    /// Sent as `"mock": {"chunks": N}`: how many chunks the mock upstream emits.
    #[arg(long)]
    chunks: Option<u32>,
    /// Process whose CPU time and memory to measure (repeatable).
    #[arg(long = "pid")]
    pids: Vec<u32>,
    /// Free text identifying the run in the output.
    #[arg(long, default_value = "run")]
    label: String,
    /// Print one JSON object instead of a table row.
    #[arg(long)]
    json: bool,
    /// Table mode: omit the header line (for appending rows of several runs).
    #[arg(long)]
    no_header: bool,
    /// Tokio worker threads of the load generator. Keep it low on small
    /// machines: the generator competes with the gateway for cores.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Per-request timeout (connect to last byte).
    #[arg(long, default_value_t = 60.0)]
    timeout_secs: f64,
    /// The client API: `chat` (OpenAI chat completions) or `messages`
    /// (Anthropic Messages, key in `x-api-key`).
    #[arg(long, value_enum, default_value_t = Api::Chat)]
    api: Api,
    /// Behave like the OpenAI and Anthropic SDKs when refused: a worker
    /// whose request got a 429 or 503 with `Retry-After` waits that long
    /// (at most 60 s) before its next request. Without it, a refused worker
    /// retries at once: the worst case, a client that ignores the header.
    #[arg(long)]
    honour_retry_after: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    ensure!(args.concurrency >= 1, "--concurrency must be at least 1");
    ensure!(args.threads >= 1, "--threads must be at least 1");
    ensure!(args.requests != Some(0), "--requests must be at least 1");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()
        .context("starting tokio runtime")?;
    let (report, ok) = runtime.block_on(run(&args))?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        if !args.no_header {
            println!("{}", Report::table_header());
        }
        println!("{}", report.table_row());
    }
    if !ok {
        // Report printed above; a distinct exit code lets scripts notice that
        // nothing worked (wrong URL, key, model...) without parsing output.
        std::process::exit(2);
    }
    Ok(())
}

async fn run(args: &Args) -> Result<(Report, bool)> {
    let duration = args
        .duration_secs
        .map(|s| {
            Duration::try_from_secs_f64(s)
                .ok()
                .filter(|d| !d.is_zero())
                .with_context(|| format!("invalid --duration-secs {s}"))
        })
        .transpose()?;
    let timeout = Duration::try_from_secs_f64(args.timeout_secs)
        .ok()
        .filter(|d| !d.is_zero())
        .with_context(|| format!("invalid --timeout-secs {}", args.timeout_secs))?;
    let procs: Vec<Proc> = args.pids.iter().map(|&p| Proc::Pid(p)).collect();
    // Fail early on a wrong pid rather than after a long run.
    for &proc in &procs {
        procstat::cpu_ticks(proc).context("--pid does not name a readable process")?;
    }
    let ticks_per_sec = procstat::clock_ticks_per_sec() as f64;

    let target = Arc::new(Target::new(TargetConfig {
        base_url: &args.url,
        key: args.key.clone(),
        model: &args.model,
        stream: args.stream,
        chunks: args.chunks,
        concurrency: args.concurrency,
        timeout,
        api: args.api,
        honour_retry_after: args.honour_retry_after,
    })?);

    if args.warmup > 0 {
        let warm = StopAt {
            requests: Some(args.warmup),
            duration: None,
        };
        let phase = load::run_phase(&target, args.concurrency, warm).await?;
        if phase.error_count() > 0 {
            print_errors("warm-up", target.url(), &phase);
        }
    }

    let stop = StopAt {
        requests: args.requests.or(if duration.is_none() {
            Some(DEFAULT_REQUESTS)
        } else {
            None
        }),
        duration,
    };
    let before = cpu_snapshot(&procs)?;
    let phase = load::run_phase(&target, args.concurrency, stop).await?;
    let after = cpu_snapshot(&procs);

    let cpu = match after {
        Ok(after) => CpuUsage {
            targets_s: (!procs.is_empty())
                .then(|| after.targets.saturating_sub(before.targets) as f64 / ticks_per_sec),
            bench_s: Some(after.bench.saturating_sub(before.bench) as f64 / ticks_per_sec),
        },
        Err(err) => {
            eprintln!("warning: no CPU numbers: {err:#}");
            CpuUsage {
                targets_s: None,
                bench_s: None,
            }
        }
    };
    let mem = match total_memory(&procs) {
        Ok(mem) => mem,
        Err(err) => {
            eprintln!("warning: no memory numbers: {err:#}");
            None
        }
    };
    if phase.error_count() > 0 {
        print_errors("measured", target.url(), &phase);
    }

    let info = RunInfo {
        label: args.label.clone(),
        concurrency: args.concurrency,
        stream: args.stream,
        chunks: args.chunks,
    };
    let ok = phase.ok() > 0;
    Ok((Report::new(info, &phase, cpu, mem), ok))
}

struct CpuSnapshot {
    targets: u64,
    bench: u64,
}

fn cpu_snapshot(procs: &[Proc]) -> Result<CpuSnapshot> {
    let mut targets = 0;
    for &proc in procs {
        targets += procstat::cpu_ticks(proc)?;
    }
    Ok(CpuSnapshot {
        targets,
        bench: procstat::cpu_ticks(Proc::SelfProc)?,
    })
}

/// Summed over all pids; `None` when no `--pid` was given.
fn total_memory(procs: &[Proc]) -> Result<Option<Memory>> {
    if procs.is_empty() {
        return Ok(None);
    }
    let mut total = Memory::default();
    for &proc in procs {
        total = total + procstat::memory(proc)?;
    }
    Ok(Some(total))
}

/// Errors go to stderr so `--json` stdout stays machine-readable.
fn print_errors(phase_name: &str, url: &str, phase: &PhaseResult) {
    eprintln!(
        "{phase_name}: {} of {} requests to {url} failed:",
        phase.error_count(),
        phase.error_count() + phase.ok()
    );
    for (kind, group) in &phase.errors {
        eprintln!("  {:>7} x {kind}  (e.g. {})", group.count, group.sample);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // panicking is how tests fail
mod tests {
    use super::*;

    #[test]
    fn cli_parses() {
        let args = Args::try_parse_from([
            "llmgw-bench",
            "--url",
            "http://x/v1",
            "-c",
            "16",
            "--stream",
            "--chunks",
            "20",
            "--pid",
            "1",
            "--pid",
            "2",
            "--json",
        ])
        .unwrap();
        assert_eq!(args.concurrency, 16);
        assert_eq!(args.pids, vec![1, 2]);
        assert_eq!(args.warmup, 200);
        assert_eq!(args.model, "bench");
        assert!(args.stream && args.json);
    }

    #[test]
    fn missing_pid_is_an_error() {
        // pid_max is at most 2^22, so this pid cannot exist.
        assert!(procstat::cpu_ticks(Proc::Pid(u32::MAX)).is_err());
    }
}
