//! Other work on the machine, measured during each run: CPU time spent in user space by
//! processes that are not the benchmark's. On two cores a concurrent build turns a 2 %
//! difference into noise, so a run it disturbed is named in the report instead of being
//! silently averaged in.

use std::time::Instant;

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

/// Parses `/proc/<pid>/stat`: fields after the command name (which may contain spaces,
/// so it is skipped up to its closing parenthesis) start at field 3; utime is field 14,
/// cutime field 16.
fn user_ticks(stat: &str, with_children: bool) -> u64 {
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    field(14) + if with_children { field(16) } else { 0 }
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
    }
}
