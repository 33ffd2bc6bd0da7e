//! Metrics that live in the agent, not in the kernel: what the sources and the run loop
//! saw. One set of handles, created at start and shared with the sources; each scrape
//! registers clones of them (a clone shares the value).

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

/// Labels of a Docker event series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    /// `create`, `start`, `die` or `destroy`.
    pub action: String,
}

/// Labels of a DNS response series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RcodeLabels {
    /// The response code, e.g. `NoError`, `NXDomain`, `Refused`.
    pub rcode: String,
}

/// The agent's own metrics.
#[derive(Clone, Debug)]
pub struct AgentMetrics {
    /// 1 while every Consul watch answers, 0 while one fails.
    pub consul_reachable: Gauge,
    /// 1 once the Consul source's initial sync is done.
    pub consul_synced: Gauge,
    /// Unix time of the last answer from Consul.
    pub consul_last_answer: Gauge,
    /// Failed Consul requests (each watch failure).
    pub consul_watch_errors: Counter,
    /// Consul watches failing now.
    pub consul_watches_failing: Gauge,
    /// Docker events followed, by action.
    pub docker_events: Family<EventLabels, Counter>,
    /// 1 while dockerd's event stream is followed.
    pub docker_reachable: Gauge,
    /// Containers with a policy entry in the kernel.
    pub containers_with_policy: Gauge,
    /// Undeclared connects reported by the kernel (audit events).
    pub audit_events: Counter,
    /// Kernel map writes made by the reconciler.
    pub reconcile_writes: Counter,
    /// From a source's update reaching the run loop to its map writes being done.
    pub update_to_kernel: Histogram,
    /// DNS responses sent, by response code.
    pub dns_responses: Family<RcodeLabels, Counter>,
}

impl Default for AgentMetrics {
    fn default() -> Self {
        Self {
            consul_reachable: Gauge::default(),
            consul_synced: Gauge::default(),
            consul_last_answer: Gauge::default(),
            consul_watch_errors: Counter::default(),
            consul_watches_failing: Gauge::default(),
            docker_events: Family::default(),
            docker_reachable: Gauge::default(),
            containers_with_policy: Gauge::default(),
            audit_events: Counter::default(),
            reconcile_writes: Counter::default(),
            // 50 µs to ~1.6 s.
            update_to_kernel: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
            dns_responses: Family::default(),
        }
    }
}

impl AgentMetrics {
    /// Adds every series to `registry`; `consul`/`docker`/`dns`: whether those run (their
    /// series exist only then).
    pub fn register(&self, registry: &mut Registry, consul: bool, docker: bool, dns: bool) {
        if dns {
            registry.register("viking_dns_responses", "DNS responses sent, by code", self.dns_responses.clone());
        }
        if consul {
            registry.register(
                "viking_consul_reachable",
                "1 while every Consul watch answers",
                self.consul_reachable.clone(),
            );
            registry.register(
                "viking_consul_synced",
                "1 once the initial Consul sync is done",
                self.consul_synced.clone(),
            );
            registry.register(
                "viking_consul_last_answer_timestamp_seconds",
                "Unix time of the last answer from Consul",
                self.consul_last_answer.clone(),
            );
            registry.register("viking_consul_watch_errors", "Failed Consul requests", self.consul_watch_errors.clone());
            registry.register(
                "viking_consul_watches_failing",
                "Consul watches failing now",
                self.consul_watches_failing.clone(),
            );
        }
        if docker {
            registry.register("viking_docker_events", "Docker container events followed", self.docker_events.clone());
            registry.register(
                "viking_docker_reachable",
                "1 while dockerd's event stream is followed",
                self.docker_reachable.clone(),
            );
        }
        registry.register(
            "viking_containers_with_policy",
            "Containers with a policy entry in the kernel",
            self.containers_with_policy.clone(),
        );
        registry.register("viking_audit_events", "Undeclared connects the kernel reported", self.audit_events.clone());
        registry.register(
            "viking_reconcile_writes",
            "Kernel map writes by the reconciler",
            self.reconcile_writes.clone(),
        );
        registry.register(
            "viking_update_to_kernel_seconds",
            "From a source's update reaching the run loop to its map writes being done",
            self.update_to_kernel.clone(),
        );
    }
}

/// Now as Unix seconds, for timestamp gauges.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
