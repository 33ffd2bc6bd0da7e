//! What a benchmark run measured, before it is turned into tables and a plot.

use std::time::Duration;

use crate::setups::Setup;

/// Repeated measurements of one quantity; the median is what is reported.
#[derive(Clone, Debug, Default)]
pub struct Sample {
    /// Every value, in measurement order.
    pub values: Vec<f64>,
}

impl Sample {
    /// The median (mean of the middle two for an even count); `None` when empty.
    pub fn median(&self) -> Option<f64> {
        let mut sorted = self.values.clone();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        match n {
            0 => None,
            _ if n % 2 == 1 => Some(sorted[n / 2]),
            _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
        }
    }

    /// Largest relative distance of a value from the median (run-to-run noise).
    pub fn spread(&self) -> Option<f64> {
        let median = self.median()?;
        self.values.iter().map(|v| (v - median).abs() / median).reduce(f64::max)
    }
}

/// A measurement, or why there is none.
pub type Measured = Result<Sample, String>;

/// Costs per call in nanoseconds, from the kernel's BPF run-time statistics.
#[derive(Clone, Debug, Default)]
pub struct Cost {
    /// Viking's `cgroup/connect4` program.
    pub viking_connect4: Option<f64>,
    /// Viking's `cgroup/sock_release` program (also on every short connection's path).
    pub viking_release: Option<f64>,
    /// Viking's `sockops` program (outlier ejection), per connection: it runs several
    /// times for each (connect, established, and TCP's own callbacks).
    pub viking_sock_ops_per_connection: Option<f64>,
    /// The baseline redirect program.
    pub baseline: Option<f64>,
}

/// Everything measured with one number of services installed.
#[derive(Clone, Debug)]
pub struct Point {
    /// Number of services installed for Viking, the baseline program and iptables.
    pub services: u32,
    /// New connections per second, per setup.
    pub connections: Vec<(Setup, Measured)>,
    /// How long the agent took to apply the config change to this many services.
    pub viking_apply: Result<Duration, String>,
    /// How long `iptables-restore` took for this many services.
    pub iptables_install: Result<Duration, String>,
    /// Program costs per call.
    pub cost: Cost,
}

impl Point {
    /// The new-connection measurement of `setup`, if it was part of this point.
    pub fn connections(&self, setup: Setup) -> Option<&Measured> {
        self.connections.iter().find(|(s, _)| *s == setup).map(|(_, m)| m)
    }

    /// `setup`'s median new-connection rate divided by direct's, at this point.
    pub fn ratio(&self, setup: Setup) -> Option<f64> {
        let direct = self.connections(Setup::Direct)?.as_ref().ok()?.median()?;
        let other = self.connections(setup)?.as_ref().ok()?.median()?;
        Some(other / direct)
    }
}

/// Latency and throughput on established connections, for one setup.
#[derive(Clone, Debug)]
pub struct Persistent {
    /// The setup.
    pub setup: Setup,
    /// Median round trip, microseconds, per run.
    pub p50_us: Sample,
    /// 99th-percentile round trip, microseconds, per run.
    pub p99_us: Sample,
    /// Bulk throughput, Gbit/s, per run.
    pub gbit_s: Sample,
}

/// The whole run.
#[derive(Clone, Debug, Default)]
pub struct Results {
    /// One entry per sweep point, in sweep order.
    pub points: Vec<Point>,
    /// Established-connection measurements (one service installed).
    pub persistent: Vec<Persistent>,
    /// Things the reader must know: errors, refused points, saturated tables.
    pub notes: Vec<String>,
    /// Share of the CPUs other processes used during each load run (see `cpu.rs`).
    pub foreign_cpu: Sample,
    /// Runs other processes disturbed: what ran, and their share of the CPUs.
    pub disturbed: Vec<(String, f64)>,
}

impl Results {
    /// The established-connection results of `setup`.
    pub fn persistent(&self, setup: Setup) -> Option<&Persistent> {
        self.persistent.iter().find(|p| p.setup == setup)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_spread() {
        let sample = Sample { values: vec![3.0, 1.0, 2.0] };
        assert_eq!(sample.median(), Some(2.0));
        assert_eq!(sample.spread(), Some(0.5));
        assert_eq!(Sample { values: vec![1.0, 2.0, 4.0, 3.0] }.median(), Some(2.5));
        assert_eq!(Sample::default().median(), None);
    }

    #[test]
    fn ratios_are_to_direct_of_the_same_point() {
        let point = Point {
            services: 1,
            connections: vec![
                (Setup::Direct, Ok(Sample { values: vec![100.0] })),
                (Setup::Viking, Ok(Sample { values: vec![98.0] })),
                (Setup::Iptables, Err("not measured".into())),
            ],
            viking_apply: Ok(Duration::ZERO),
            iptables_install: Err("not measured".into()),
            cost: Cost::default(),
        };
        assert_eq!(point.ratio(Setup::Viking), Some(0.98));
        assert_eq!(point.ratio(Setup::Iptables), None);
        assert_eq!(point.ratio(Setup::Haproxy), None);
    }
}
