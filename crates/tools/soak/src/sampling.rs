//! Resident memory and open file descriptors of each gateway process,
//! sampled from `/proc` on a schedule, and the least-squares slope of each
//! (a leak shows as a slope that stays positive over a long run).

/// One reading of one process.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Seconds since the run began.
    pub at: f64,
    pub pid: u32,
    pub rss_kb: u64,
    pub fds: u64,
}

/// `VmRSS` and the count of `/proc/<pid>/fd`; `None` if the process is gone.
pub fn read(pid: u32, at: f64) -> Option<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kb = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kb| kb.parse().ok())?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
    Some(Sample {
        at,
        pid,
        rss_kb,
        fds,
    })
}

/// The slope of `y` over `x` by least squares; `None` with fewer than two
/// distinct `x`.
pub fn slope(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let mean_x = points.iter().map(|(x, _)| x).sum::<f64>() / n;
    let mean_y = points.iter().map(|(_, y)| y).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|(x, _)| (x - mean_x).powi(2)).sum();
    if sxx == 0.0 {
        return None;
    }
    let sxy: f64 = points
        .iter()
        .map(|(x, y)| (x - mean_x) * (y - mean_y))
        .sum();
    Some(sxy / sxx)
}

/// The trend of one process: its latest incarnation's samples after a
/// warm-up (allocator pools and connection pools fill at first).
#[derive(Debug)]
pub struct Trend {
    pub samples: usize,
    pub window_secs: f64,
    pub rss_first_kb: u64,
    pub rss_last_kb: u64,
    pub fds_last: u64,
    /// kB per minute.
    pub rss_slope: Option<f64>,
    /// Descriptors per minute.
    pub fd_slope: Option<f64>,
}

pub fn trend(samples: &[Sample], warm_up_secs: f64) -> Option<Trend> {
    let last_pid = samples.last()?.pid;
    let incarnation: Vec<&Sample> = samples.iter().filter(|s| s.pid == last_pid).collect();
    let start = incarnation.first()?.at + warm_up_secs;
    let mut window: Vec<&Sample> = incarnation
        .iter()
        .copied()
        .filter(|s| s.at >= start)
        .collect();
    if window.len() < 2 {
        // A short run: the whole incarnation rather than nothing.
        window = incarnation;
    }
    let first = window.first()?;
    let last = window.last()?;
    let per_minute = |value: fn(&Sample) -> u64| {
        let points: Vec<(f64, f64)> = window
            .iter()
            .map(|s| (s.at / 60.0, value(s) as f64))
            .collect();
        slope(&points)
    };
    Some(Trend {
        samples: window.len(),
        window_secs: last.at - first.at,
        rss_first_kb: first.rss_kb,
        rss_last_kb: last.rss_kb,
        fds_last: last.fds,
        rss_slope: per_minute(|s| s.rss_kb),
        fd_slope: per_minute(|s| s.fds),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slope_of_a_line_is_its_gradient() {
        let points: Vec<(f64, f64)> = (0..10)
            .map(|x| (f64::from(x), 3.0 * f64::from(x) + 7.0))
            .collect();
        let found = slope(&points).expect("a slope");
        assert!((found - 3.0).abs() < 1e-9, "{found}");
        assert_eq!(slope(&[(1.0, 2.0)]), None);
        assert_eq!(slope(&[(1.0, 2.0), (1.0, 3.0)]), None);
    }
}
