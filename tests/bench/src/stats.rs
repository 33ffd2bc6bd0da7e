//! The kernel's own accounting of BPF program run time: `run_time_ns / run_cnt` per
//! program, counted while statistics are switched on.
//!
//! Statistics are switched on with `BPF_ENABLE_STATS`, the syscall form of
//! `sysctl kernel.bpf_stats_enabled=1`: it is tied to a file descriptor, so the kernel
//! switches them off again when the benchmark closes it — or dies — and a value set by
//! someone else (the sysctl) is left as it was.

use std::os::fd::OwnedFd;

use anyhow::Context as _;
use aya::{programs::loaded_programs, sys::Stats};

/// Run-time statistics are on while this lives.
#[derive(Debug)]
pub struct RunTimeStats {
    _fd: OwnedFd,
}

impl RunTimeStats {
    /// Switches statistics on.
    pub fn enable() -> anyhow::Result<Self> {
        let fd = aya::sys::enable_stats(Stats::RunTime).context("BPF_ENABLE_STATS (kernel.bpf_stats_enabled)")?;
        Ok(Self { _fd: fd })
    }
}

/// A program's cumulative counters at one moment.
#[derive(Clone, Copy, Debug)]
pub struct Counters {
    run_time_ns: u64,
    run_count: u64,
}

impl Counters {
    /// Reads the counters of the program with kernel id `id`.
    pub fn read(id: u32) -> anyhow::Result<Self> {
        for info in loaded_programs() {
            let info = info.context("listing BPF programs")?;
            if info.id() == id {
                return Ok(Self { run_time_ns: info.run_time().as_nanos() as u64, run_count: info.run_count() });
            }
        }
        anyhow::bail!("no loaded BPF program has id {id}")
    }

    /// Runs since `earlier`, and their mean cost in nanoseconds (`None` without runs).
    pub fn since(&self, earlier: &Self) -> (u64, Option<f64>) {
        let runs = self.run_count.saturating_sub(earlier.run_count);
        let time = self.run_time_ns.saturating_sub(earlier.run_time_ns);
        (runs, (runs > 0).then(|| time as f64 / runs as f64))
    }
}
