//! What the kernel says about a process: CPU time and resident memory.
//!
//! At high rates the load generator's own core is the limit, so req/s alone
//! stops telling servers apart; the server's CPU time per request still does.

use std::time::Instant;

/// Clock ticks per second of `/proc/PID/stat` times (`getconf CLK_TCK`);
/// 100 on every Linux this runs on, asked once anyway.
pub fn clock_ticks_per_sec() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// utime + stime of all threads of `pid`, in clock ticks.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_cpu_ticks(&stat)
}

/// Our own utime + stime.
pub fn own_cpu_ticks() -> Option<u64> {
    cpu_ticks(std::process::id())
}

fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) may hold spaces and parentheses: fields are
    // counted after its closing parenthesis. utime and stime are fields 14, 15.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Resident set size of `pid` in KiB (`VmRSS`, which /proc calls kB).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_status_kib(&status, "VmRSS:")
}

fn parse_status_kib(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(key))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Open file descriptors of `pid`.
pub fn open_fds(pid: u32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

/// CPU time of the server and of this generator over a window.
#[derive(Clone, Copy, Debug)]
pub struct CpuSample {
    at: Instant,
    server: Option<u64>,
    client: Option<u64>,
}

impl CpuSample {
    pub fn take(server_pid: Option<u32>) -> CpuSample {
        CpuSample {
            at: Instant::now(),
            server: server_pid.and_then(cpu_ticks),
            client: own_cpu_ticks(),
        }
    }
}

/// CPU used between two samples.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuUse {
    pub server_secs: Option<f64>,
    pub server_pct: Option<f64>,
    pub client_pct: Option<f64>,
}

impl CpuUse {
    /// Several servers' use over the same window: their CPU added up
    /// (`None` if any is unknown); the generator's is the first's.
    pub fn sum(uses: &[CpuUse]) -> CpuUse {
        let Some(first) = uses.first() else {
            return CpuUse::default();
        };
        let total = |pick: fn(&CpuUse) -> Option<f64>| uses.iter().map(pick).sum::<Option<f64>>();
        CpuUse {
            server_secs: total(|u| u.server_secs),
            server_pct: total(|u| u.server_pct),
            client_pct: first.client_pct,
        }
    }
}

pub fn cpu_between(start: &CpuSample, end: &CpuSample, ticks_per_sec: u64) -> CpuUse {
    let wall = end.at.duration_since(start.at).as_secs_f64().max(1e-9);
    let secs = |a: Option<u64>, b: Option<u64>| Some(b?.saturating_sub(a?) as f64 / ticks_per_sec as f64);
    let server_secs = secs(start.server, end.server);
    let client_secs = secs(start.client, end.client);
    CpuUse {
        server_secs,
        server_pct: server_secs.map(|s| 100.0 * s / wall),
        client_pct: client_secs.map(|s| 100.0 * s / wall),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_names() {
        let stat = "1234 (my (odd) name) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 3 0";
        assert_eq!(parse_cpu_ticks(stat), Some(300));
    }

    #[test]
    fn parses_rss() {
        let status = "Name:\tx\nVmRSS:\t   12345 kB\nThreads:\t3\n";
        assert_eq!(parse_status_kib(status, "VmRSS:"), Some(12345));
    }

    #[test]
    fn reads_our_own_process() {
        assert!(own_cpu_ticks().is_some());
        assert!(rss_kib(std::process::id()).unwrap() > 0);
    }
}
