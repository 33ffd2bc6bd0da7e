//! Other work on the machine, measured during each run: CPU time spent in user space by
//! processes that are not the benchmark's. On two cores a concurrent build turns a 2 %
//! difference into noise, so a run it disturbed is named in the report instead of being
//! silently averaged in.

use std::time::{Duration, Instant};

/// The benchmark's long-lived child processes (agent, HAProxy), besides the driver itself
/// and the children it has reaped (load generators, iptables-restore, …).
#[derive(Debug, Default)]
pub struct CpuMonitor {
    children: Vec<u32>,
}

/// Cumulative user-space CPU ticks at one moment.
#[derive(Clone, Copy, Debug)]
pub struct CpuSnapshot {
    machine: u64,
    idle: u64,
    bench: u64,
    at: Instant,
}

impl CpuMonitor {
    /// Also counts `pid` as the benchmark's own.
    pub fn add_child(&mut self, pid: u32) {
        self.children.push(pid);
    }

    /// Reads the counters now.
    pub fn snapshot(&self) -> CpuSnapshot {
        let mut bench = process_ticks("self", true);
        for pid in &self.children {
            bench += process_ticks(&pid.to_string(), false);
        }
        let (machine, idle) = machine_ticks();
        CpuSnapshot { machine, idle, bench, at: Instant::now() }
    }
}

impl CpuSnapshot {
    /// Share of all CPUs (0..=1) that other processes used in user space since `earlier`.
    pub fn foreign_share_since(&self, earlier: &Self) -> f64 {
        let foreign =
            self.machine.saturating_sub(earlier.machine).saturating_sub(self.bench.saturating_sub(earlier.bench));
        self.share(foreign, earlier)
    }

    /// Share of all CPUs (0..=1) that was idle since `earlier`: near 0 means the run kept
    /// the machine busy, so its rate is a CPU cost, not a wait.
    pub fn idle_share_since(&self, earlier: &Self) -> f64 {
        self.share(self.idle.saturating_sub(earlier.idle), earlier)
    }

    fn share(&self, ticks: u64, earlier: &Self) -> f64 {
        let cores = std::thread::available_parallelism().map_or(1, usize::from) as f64;
        let available = self.at.duration_since(earlier.at).as_secs_f64() * ticks_per_second() * cores;
        if available > 0.0 { (ticks as f64 / available).min(1.0) } else { 0.0 }
    }
}

/// `user + nice` and `idle + iowait` of the `cpu` line of /proc/stat.
fn machine_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<u64> =
        stat.lines().next().unwrap_or("").split_whitespace().skip(1).filter_map(|f| f.parse().ok()).collect();
    let field = |i: usize| fields.get(i).copied().unwrap_or(0);
    (field(0) + field(1), field(3) + field(4))
}

/// `utime` of a process (all its threads), plus `cutime` (reaped children) if asked.
fn process_ticks(pid: &str, with_children: bool) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    user_ticks(&stat, with_children)
}

/// `utime` of a parsed `/proc/<pid>/stat`, plus `cutime` if asked.
fn user_ticks(stat: &str, with_children: bool) -> u64 {
    stat_field(stat, 14) + if with_children { stat_field(stat, 16) } else { 0 }
}

/// `utime + stime` (user and system time, in clock ticks) of a `/proc/<pid>/stat` line.
pub fn stat_cpu_ticks(stat: &str) -> u64 {
    stat_field(stat, 14) + stat_field(stat, 15)
}

/// Field `n` (numbered from 1, as in proc(5)) of a `/proc/<pid>/stat` line, 0 when it is
/// missing. The command name (field 2) may contain spaces, so the fields after it are
/// counted from its closing parenthesis: they start at field 3.
fn stat_field(stat: &str, n: usize) -> u64 {
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0;
    };
    rest.split_whitespace().nth(n - 3).and_then(|f| f.parse().ok()).unwrap_or(0)
}

/// Clock ticks as time.
pub fn ticks_to_duration(ticks: u64) -> Duration {
    Duration::from_secs_f64(ticks as f64 / ticks_per_second())
}

fn ticks_per_second() -> f64 {
    let ticks = rustix::param::clock_ticks_per_second();
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ticks_skip_a_command_name_with_spaces() {
        let stat = "42 (a b) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 11 5 20 0 1 0 100 0 0";
        assert_eq!(user_ticks(stat, false), 7);
        assert_eq!(user_ticks(stat, true), 18);
        assert_eq!(user_ticks("garbage", true), 0);
        assert_eq!(stat_cpu_ticks(stat), 10);
    }
}
