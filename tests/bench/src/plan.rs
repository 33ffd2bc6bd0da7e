//! What one benchmark run measures and for how long: the full run (≤ 15 minutes on two
//! cores) or `--quick` (about two minutes).

use std::time::Duration;

/// The sizes, durations and repetitions of one run.
#[derive(Clone, Debug)]
pub struct Plan {
    /// `--quick` was given.
    pub quick: bool,
    /// Numbers of services installed for Viking, the baseline program and iptables.
    pub sweep: Vec<u32>,
    /// Repetitions of each new-connection measurement; setups are interleaved within a
    /// repetition so slow drifts of the machine hit all of them alike, and the median is
    /// reported.
    pub repetitions: usize,
    /// Repetitions of each latency and bulk measurement.
    pub persistent_repetitions: usize,
    /// Length of one new-connections run.
    pub connections_run: Duration,
    /// Length of one latency or bulk run.
    pub persistent_run: Duration,
    /// Length of the runs with BPF run-time statistics on (program cost per call).
    pub cost_run: Duration,
    /// Client threads of the new-connections workload.
    pub client_threads: u32,
    /// Worker threads per backend address.
    pub server_workers: usize,
    /// Longest an iptables-restore of one sweep point may take before the point is
    /// reported as not measured.
    pub iptables_install_limit: Duration,
    /// Longest the agent may take to apply one sweep point's services.
    pub viking_apply_limit: Duration,
}

impl Plan {
    /// The full plan, or the quick one.
    pub fn new(quick: bool) -> Self {
        let cores = std::thread::available_parallelism().map_or(2, usize::from) as u32;
        let base = Self {
            quick,
            sweep: vec![1, 100, 1_000, 10_000, 100_000],
            // Five short runs beat three long ones: on a small VM single runs drift by a few
            // percent, and the median of five shrugs off one bad run.
            repetitions: 5,
            persistent_repetitions: 3,
            connections_run: Duration::from_secs(4),
            persistent_run: Duration::from_secs(3),
            cost_run: Duration::from_secs(3),
            // Enough connections in flight to keep every core busy: with fewer, the rate is
            // bound by thread wake-up latency rather than by the cost of the connect path
            // (on a 2-core VM, 2 clients left a quarter of the CPU idle and doubled the
            // run-to-run spread; 8 kept it busy).
            client_threads: 4 * cores,
            server_workers: 4 * cores as usize,
            iptables_install_limit: Duration::from_secs(180),
            viking_apply_limit: Duration::from_secs(180),
        };
        if !quick {
            return base;
        }
        Self {
            sweep: vec![1, 1_000, 10_000],
            repetitions: 3,
            persistent_repetitions: 2,
            connections_run: Duration::from_millis(1500),
            persistent_run: Duration::from_secs(1),
            cost_run: Duration::from_secs(1),
            ..base
        }
    }

    /// The largest number of services of the sweep (maps and limits are sized for it).
    pub fn max_services(&self) -> u32 {
        self.sweep.iter().copied().max().unwrap_or(1)
    }

    /// One line for the log and the report.
    pub fn summary(&self) -> String {
        format!(
            "{} run: services {:?}, {} x {} s per new-connection measurement, {} x {} s latency and bulk runs, \
             {} client threads, {} server workers per backend",
            if self.quick { "quick" } else { "full" },
            self.sweep,
            self.repetitions,
            self.connections_run.as_secs_f64(),
            self.persistent_repetitions,
            self.persistent_run.as_secs_f64(),
            self.client_threads,
            self.server_workers,
        )
    }
}
