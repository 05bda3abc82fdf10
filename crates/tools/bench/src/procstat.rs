//! CPU time and memory of processes, read from Linux `/proc`.
//!
//! The gateway runs as separate processes, so we measure it from the outside
//! rather than asking it for metrics: that keeps the numbers comparable between
//! the direct, all-in-one and split scenarios and works for any binary.

use anyhow::{Context, Result, bail};
use std::process::Command;

/// Which process to read: a pid, or the load generator itself (`/proc/self`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proc {
    Pid(u32),
    SelfProc,
}

impl Proc {
    fn path(self, file: &str) -> String {
        match self {
            Proc::Pid(pid) => format!("/proc/{pid}/{file}"),
            Proc::SelfProc => format!("/proc/self/{file}"),
        }
    }
}

/// Clock ticks per second used by `/proc/<pid>/stat` times.
///
/// Asking `getconf` avoids a libc dependency (and `unsafe` is forbidden in the
/// workspace); 100 is the value on every mainstream Linux configuration.
pub fn clock_ticks_per_sec() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|s| s.trim().parse::<u64>().ok())
        .filter(|&ticks| ticks > 0)
        .unwrap_or(100)
}

/// User + system CPU time of a process, in clock ticks.
pub fn cpu_ticks(proc: Proc) -> Result<u64> {
    let path = proc.path("stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_stat_cpu_ticks(&text).with_context(|| format!("parsing {path}"))
}

/// Extracts `utime + stime` (fields 14 and 15, see proc(5)) from a stat line.
fn parse_stat_cpu_ticks(text: &str) -> Result<u64> {
    // Field 2 (comm) is parenthesised and may itself contain spaces or ')',
    // so split after the *last* ')' and count from field 3 (state).
    let Some((_, rest)) = text.rsplit_once(')') else {
        bail!("no ')' after comm");
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3, so field N is rest[N - 3].
    let field = |n: usize| -> Result<u64> {
        let raw = fields
            .get(n - 3)
            .with_context(|| format!("missing field {n}"))?;
        raw.parse::<u64>()
            .with_context(|| format!("field {n} is not a number: {raw:?}"))
    };
    Ok(field(14)? + field(15)?)
}

/// Resident memory of a process, in kB as reported by the kernel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memory {
    /// Current resident set (`VmRSS`).
    pub rss_kb: u64,
    /// Peak resident set since process start (`VmHWM`).
    pub peak_kb: u64,
}

impl std::ops::Add for Memory {
    type Output = Memory;
    fn add(self, other: Memory) -> Memory {
        Memory {
            rss_kb: self.rss_kb + other.rss_kb,
            peak_kb: self.peak_kb + other.peak_kb,
        }
    }
}

pub fn memory(proc: Proc) -> Result<Memory> {
    let path = proc.path("status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_status_memory(&text).with_context(|| format!("parsing {path}"))
}

/// Reads `VmRSS` and `VmHWM` lines such as `VmRSS:\t   12345 kB`.
fn parse_status_memory(text: &str) -> Result<Memory> {
    let mut rss = None;
    let mut peak = None;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let slot = match key {
            "VmRSS" => &mut rss,
            "VmHWM" => &mut peak,
            _ => continue,
        };
        let number = value.split_whitespace().next().unwrap_or_default();
        *slot = Some(
            number
                .parse::<u64>()
                .with_context(|| format!("{key} is not a number: {value:?}"))?,
        );
    }
    // Kernel threads and zombies have no Vm* lines; treat that as an error so
    // a dead gateway is not reported as using 0 MB.
    match (rss, peak) {
        (Some(rss_kb), Some(peak_kb)) => Ok(Memory { rss_kb, peak_kb }),
        _ => bail!("no VmRSS/VmHWM (process exited or is a zombie?)"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // panicking is how tests fail
mod tests {
    use super::*;

    #[test]
    fn stat_fields_after_tricky_comm() {
        // comm contains a space and a ')': only the last ')' ends it.
        let line = "4242 (my) proc) S 1 4242 4242 0 -1 4194560 100 0 0 0 \
                    250 75 0 0 20 0 4 0 12345 1000000 300 18446744073709551615";
        assert_eq!(parse_stat_cpu_ticks(line).unwrap(), 325);
    }

    #[test]
    fn stat_truncated_is_error() {
        assert!(parse_stat_cpu_ticks("1 (x) S 1 2 3").is_err());
        assert!(parse_stat_cpu_ticks("garbage").is_err());
    }

    #[test]
    fn status_memory() {
        let text = "Name:\tllmgw\nVmPeak:\t  999 kB\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\n";
        let mem = parse_status_memory(text).unwrap();
        assert_eq!(
            mem,
            Memory {
                rss_kb: 10240,
                peak_kb: 20480
            }
        );
    }

    #[test]
    fn status_without_vm_lines_is_error() {
        assert!(parse_status_memory("Name:\tkthreadd\nState:\tS\n").is_err());
    }

    #[test]
    fn reads_own_process() {
        assert!(cpu_ticks(Proc::SelfProc).is_ok());
        let mem = memory(Proc::SelfProc).unwrap();
        assert!(mem.rss_kb > 0 && mem.peak_kb >= mem.rss_kb);
        assert!(clock_ticks_per_sec() > 0);
    }
}
