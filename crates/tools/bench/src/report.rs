//! Turning a measured phase into one result line (table row or JSON object).

use crate::load::PhaseResult;
use crate::procstat::Memory;
use serde::Serialize;
use std::collections::BTreeMap;

/// One benchmark run. Field names are the JSON keys `bench/run.sh` reads.
#[derive(Debug, Serialize)]
pub struct Report {
    pub label: String,
    pub concurrency: usize,
    pub stream: bool,
    pub chunks: Option<u32>,
    pub ok: u64,
    pub errors: u64,
    pub elapsed_s: f64,
    /// Successful requests per second of the measured phase.
    pub rps: f64,
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
    /// Time to first body byte; only for streaming runs.
    pub ttfb_p50_ms: Option<f64>,
    pub ttfb_p99_ms: Option<f64>,
    /// CPU time (user+sys) of all `--pid`s per successful request.
    pub cpu_us_per_req: Option<f64>,
    /// Average number of cores the `--pid`s kept busy during the run.
    pub cpu_cores: Option<f64>,
    /// Sum of `VmRSS` over the `--pid`s after the run.
    pub rss_mb: Option<f64>,
    /// Sum of `VmHWM` (peak RSS) over the `--pid`s.
    pub peak_rss_mb: Option<f64>,
    /// The load generator's own CPU per request: on a small machine it
    /// competes with the gateway, so this helps interpret the numbers.
    pub bench_cpu_us_per_req: Option<f64>,
    pub error_kinds: BTreeMap<String, u64>,
}

/// CPU time consumed during the measured phase, in seconds.
#[derive(Debug, Clone, Copy)]
pub struct CpuUsage {
    pub targets_s: Option<f64>,
    pub bench_s: Option<f64>,
}

pub struct RunInfo {
    pub label: String,
    pub concurrency: usize,
    pub stream: bool,
    pub chunks: Option<u32>,
}

impl Report {
    pub fn new(info: RunInfo, phase: &PhaseResult, cpu: CpuUsage, mem: Option<Memory>) -> Self {
        let ok = phase.ok();
        let elapsed_s = phase.elapsed.as_secs_f64();
        let per_req =
            |secs: Option<f64>| secs.filter(|_| ok > 0).map(|s| round3(s * 1e6 / ok as f64));
        let lat = |p: f64| percentile(&phase.latencies_us, p).map(us_to_ms);
        let ttfb = |p: f64| {
            percentile(&phase.ttfb_us, p)
                .filter(|_| info.stream)
                .map(us_to_ms)
        };
        Report {
            concurrency: info.concurrency,
            stream: info.stream,
            chunks: info.chunks,
            ok,
            errors: phase.error_count(),
            elapsed_s: round3(elapsed_s),
            rps: if elapsed_s > 0.0 {
                round3(ok as f64 / elapsed_s)
            } else {
                0.0
            },
            p50_ms: lat(50.0),
            p90_ms: lat(90.0),
            p99_ms: lat(99.0),
            max_ms: phase.latencies_us.last().copied().map(us_to_ms),
            ttfb_p50_ms: ttfb(50.0),
            ttfb_p99_ms: ttfb(99.0),
            cpu_us_per_req: per_req(cpu.targets_s),
            cpu_cores: cpu
                .targets_s
                .filter(|_| elapsed_s > 0.0)
                .map(|s| round3(s / elapsed_s)),
            rss_mb: mem.map(|m| kb_to_mb(m.rss_kb)),
            peak_rss_mb: mem.map(|m| kb_to_mb(m.peak_kb)),
            bench_cpu_us_per_req: per_req(cpu.bench_s),
            error_kinds: phase
                .errors
                .iter()
                .map(|(kind, g)| (kind.clone(), g.count))
                .collect(),
            label: info.label,
        }
    }

    pub fn table_header() -> String {
        format!(
            "{:<14} {:>4} {:>6} {:>8} {:>6} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8} {:>8}",
            "label",
            "conc",
            "stream",
            "ok",
            "errors",
            "rps",
            "p50_ms",
            "p90_ms",
            "p99_ms",
            "max_ms",
            "ttfb_p50",
            "cpu_us/rq",
            "rss_mb",
            "peak_mb",
        )
    }

    pub fn table_row(&self) -> String {
        format!(
            "{:<14} {:>4} {:>6} {:>8} {:>6} {:>9.1} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8} {:>8}",
            self.label,
            self.concurrency,
            if self.stream { "yes" } else { "no" },
            self.ok,
            self.errors,
            self.rps,
            cell(self.p50_ms, 3),
            cell(self.p90_ms, 3),
            cell(self.p99_ms, 3),
            cell(self.max_ms, 3),
            cell(self.ttfb_p50_ms, 3),
            cell(self.cpu_us_per_req, 1),
            cell(self.rss_mb, 1),
            cell(self.peak_rss_mb, 1),
        )
    }
}

fn cell(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:.decimals$}"))
}

/// Nearest-rank percentile of an ascending slice.
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn us_to_ms(us: u64) -> f64 {
    round3(us as f64 / 1000.0)
}

fn kb_to_mb(kb: u64) -> f64 {
    round3(kb as f64 / 1024.0)
}

/// Three decimals keep the JSON readable; µs resolution is all we measure.
fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // panicking is how tests fail
mod tests {
    use super::*;
    use crate::load::ErrorGroup;
    use std::time::Duration;

    #[test]
    fn percentiles_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), Some(50));
        assert_eq!(percentile(&v, 90.0), Some(90));
        assert_eq!(percentile(&v, 99.0), Some(99));
        assert_eq!(percentile(&v, 100.0), Some(100));
        assert_eq!(percentile(&v, 0.0), Some(1));
        assert_eq!(percentile(&[7], 99.0), Some(7));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn report_numbers() {
        let mut phase = PhaseResult {
            elapsed: Duration::from_secs(2),
            latencies_us: vec![1000, 2000, 3000, 4000],
            ttfb_us: vec![100, 200, 300, 400],
            ..PhaseResult::default()
        };
        phase.errors.insert(
            "HTTP 401 Unauthorized".into(),
            ErrorGroup {
                count: 3,
                sample: "bad key".into(),
            },
        );
        let info = RunInfo {
            label: "t".into(),
            concurrency: 4,
            stream: true,
            chunks: Some(20),
        };
        let cpu = CpuUsage {
            targets_s: Some(0.02),
            bench_s: None,
        };
        let mem = Memory {
            rss_kb: 2048,
            peak_kb: 3072,
        };
        let r = Report::new(info, &phase, cpu, Some(mem));
        assert_eq!((r.ok, r.errors), (4, 3));
        assert_eq!(r.rps, 2.0);
        assert_eq!(r.p50_ms, Some(2.0));
        assert_eq!(r.max_ms, Some(4.0));
        assert_eq!(r.ttfb_p50_ms, Some(0.2));
        assert_eq!(r.cpu_us_per_req, Some(5000.0));
        assert_eq!(r.cpu_cores, Some(0.01));
        assert_eq!((r.rss_mb, r.peak_rss_mb), (Some(2.0), Some(3.0)));
        assert_eq!(r.bench_cpu_us_per_req, None);
        assert_eq!(r.error_kinds["HTTP 401 Unauthorized"], 3);
        assert!(r.table_row().starts_with("t "));
    }
}
