//! `viking-bench consul`: the control plane at 1,000, 10,000 and 100,000 services, each
//! with three passing instances in the in-repo Consul test server, and the real
//! `viking-agent` watching it:
//!
//! - full initial sync, cold (every VIP allocated in KV first) and warm (the VIPs exist, as
//!   after a restart or on a second host), and the agent's CPU time for the cold one;
//! - one change to the kernel: from the HTTP call that registers a new instance to the
//!   pinned map showing it;
//! - the agent's memory, its connections and open blocking queries on the server;
//! - the load on Consul: requests per second idle and under churn, and the server's CPU;
//! - what a single global watch (`/v1/health/state/any`) would cost per change instead;
//! - a simulated cluster of many agents (`cluster`).
//!
//! Nothing is sent over the network: the Consul server listens on 127.0.0.1 and the
//! instances' addresses are only written into maps.

mod agent;
mod cluster;
mod report;
mod server;

use std::time::{Duration, Instant};

use anyhow::Context as _;
pub use report::write as write_report;
use viking_sandbox::Cgroup;

pub use self::server::Transport;
use self::server::{Consul, Instance, PORT, flip_check, nodes_for, register_all};

/// What is measured: the HTTPS sweep the targets are about, then plain HTTP for contrast.
pub const POINTS: [(Transport, u32); 5] = [
    (Transport::Https, 1_000),
    (Transport::Https, 10_000),
    (Transport::Https, 100_000),
    (Transport::Http, 1_000),
    (Transport::Http, 10_000),
];
/// Passing instances per service.
pub const INSTANCES: u16 = 3;
/// Changes timed per point.
const CHANGES: usize = 200;
/// Longest a sync may take before the point is reported as failed.
const SYNC_LIMIT: Duration = Duration::from_secs(300);
/// Longest one change may take to reach the kernel.
const CHANGE_LIMIT: Duration = Duration::from_secs(10);
/// Length of the idle and the churn windows of the load measurement.
const LOAD_WINDOW: Duration = Duration::from_secs(10);
/// Check flips per second during churn.
const CHURN_RATE: u32 = 20;

/// The results for one transport and size.
#[derive(Debug)]
pub struct ConsulPoint {
    /// How the agent talked to Consul.
    pub transport: Transport,
    /// Services registered.
    pub services: u32,
    /// The nodes they run on.
    pub nodes: u32,
    /// Initial sync with no VIP allocated yet.
    pub cold_sync: Duration,
    /// The agent's CPU time until the end of the cold sync.
    pub cold_cpu: Duration,
    /// Initial sync with every VIP already in KV.
    pub warm_sync: Duration,
    /// After the warm sync, until every service's blocking query is open.
    pub settle: Duration,
    /// Change to kernel, each sample.
    pub changes: Vec<Duration>,
    /// Agent RSS after the changes, in KiB.
    pub rss_kib: u64,
    /// TCP connections open to the server, watches open.
    pub connections: usize,
    /// Blocking queries held by the agent.
    pub blocking_queries: usize,
    /// Requests per second the agent sent while nothing changed.
    pub idle_rps: f64,
    /// Requests per second under churn.
    pub churn_rps: f64,
    /// The server's CPU share (of one core) under churn.
    pub churn_server_cpu: f64,
    /// `/v1/health/state/any`: bytes and time of one answer.
    pub global_watch: (usize, Duration),
}

/// Which measurements to run.
#[derive(Debug)]
pub struct Selection {
    points: Vec<(Transport, u32)>,
    cluster: bool,
}

impl Selection {
    /// `only` as given on the command line (`https:10000`, `cluster`); empty: everything.
    pub fn parse(only: &[String]) -> anyhow::Result<Self> {
        if only.is_empty() {
            return Ok(Self { points: POINTS.to_vec(), cluster: true });
        }
        let mut selection = Self { points: Vec::new(), cluster: false };
        for item in only {
            if item == "cluster" {
                selection.cluster = true;
                continue;
            }
            let point = item.split_once(':').and_then(|(transport, services)| {
                let transport =
                    [Transport::Https, Transport::Http].into_iter().find(|t| t.name_short() == transport)?;
                Some((transport, services.parse().ok()?))
            });
            selection
                .points
                .push(point.with_context(|| format!("--only {item:?}: expected https:N, http:N or cluster"))?);
        }
        Ok(selection)
    }
}

/// Runs the selected points, then the simulated cluster.
pub fn run(
    agent_binary: &std::path::Path,
    work_dir: &std::path::Path,
    selection: &Selection,
) -> anyhow::Result<report::Results> {
    let mut points = Vec::new();
    for &(transport, services) in &selection.points {
        crate::interrupt::check()?;
        eprintln!("viking-bench consul: {services} services over {}", transport.name());
        points.push(point(agent_binary, work_dir, transport, services)?);
    }
    crate::interrupt::check()?;
    let cluster = if selection.cluster {
        eprintln!("viking-bench consul: simulated cluster");
        cluster::run(work_dir).map_err(|err| {
            eprintln!("viking-bench consul: the simulated cluster failed: {err:#}");
            format!("{err:#}")
        })
    } else {
        Err("not measured in this run (--only)".to_owned())
    };
    Ok(report::Results { points, cluster })
}

fn point(
    agent_binary: &std::path::Path,
    work_dir: &std::path::Path,
    transport: Transport,
    services: u32,
) -> anyhow::Result<ConsulPoint> {
    let consul = Consul::start(transport, work_dir)?;
    register_all(consul.server(), services, u32::from(INSTANCES))?;
    let cgroup = Cgroup::unique()?;
    let config = agent::config(&consul, services, u32::from(INSTANCES));

    let cold = agent::Agent::start(agent_binary, &cgroup, work_dir, &config)?;
    let cold_sync = cold.wait_synced(services, INSTANCES, SYNC_LIMIT).context("cold sync")?;
    let cold_cpu = cold.cpu_time()?;
    drop(cold);
    crate::interrupt::check()?;
    let warm = agent::Agent::start(agent_binary, &cgroup, work_dir, &config)?;
    let warm_sync = warm.wait_synced(services, INSTANCES, SYNC_LIMIT).context("warm sync")?;
    let nodes = nodes_for(services, u32::from(INSTANCES));
    let settle = settle(&consul, queries_for(nodes))?;
    let (connections, blocking_queries) = (consul.server().open_connections(), consul.server().open_blocking_queries());

    let mut changes = Vec::with_capacity(CHANGES);
    for sample in 0..CHANGES {
        crate::interrupt::check()?;
        let index = (sample as u32 * 7_919) % services;
        let vip = consul.vip_of(index)?;
        let started = Instant::now();
        consul.register_over_http(&Instance { index, copy: u32::from(INSTANCES), nodes })?;
        warm.wait_backends(vip, PORT, INSTANCES + 1, CHANGE_LIMIT)
            .with_context(|| format!("change {sample}: service {index} never got its new backend"))?;
        changes.push(started.elapsed());
    }
    crate::interrupt::check()?;
    let (idle_rps, _) = load(&consul, services, 0)?;
    crate::interrupt::check()?;
    let (churn_rps, churn_server_cpu) = load(&consul, services, CHURN_RATE)?;
    let rss_kib = warm.rss_kib()?;
    drop(warm);
    let global_watch = consul.fetch("/v1/health/state/any")?;
    consul.stop();
    Ok(ConsulPoint {
        transport,
        services,
        nodes,
        cold_sync,
        cold_cpu,
        warm_sync,
        settle,
        changes,
        rss_kib,
        connections,
        blocking_queries,
        idle_rps,
        churn_rps,
        churn_server_cpu,
        global_watch,
    })
}

/// The blocking queries an agent opens on a cluster of `nodes` nodes once synced: the
/// node list and two per node (the VIP records' query is paced at 5 s and comes later).
pub fn queries_for(nodes: u32) -> usize {
    2 * nodes as usize + 1
}

/// Waits until the agent holds its `queries` blocking queries.
fn settle(consul: &Consul, queries: usize) -> anyhow::Result<Duration> {
    let started = Instant::now();
    while started.elapsed() < SYNC_LIMIT {
        if consul.server().open_blocking_queries() >= queries {
            return Ok(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    anyhow::bail!("the agent did not open its {queries} blocking queries")
}

/// Requests per second the agent sends during [`LOAD_WINDOW`] while `rate` checks per
/// second flip between critical and passing, and the server's CPU share meanwhile.
fn load(consul: &Consul, services: u32, rate: u32) -> anyhow::Result<(f64, f64)> {
    consul.server().clear_request_log();
    let cpu = consul.cpu_time();
    let started = Instant::now();
    let mut flips = 0u32;
    while started.elapsed() < LOAD_WINDOW {
        if rate == 0 {
            std::thread::sleep(LOAD_WINDOW);
            continue;
        }
        flip_check(consul.server(), flips, services, 0);
        flips += 1;
        let due = started + Duration::from_secs_f64(f64::from(flips) / f64::from(rate));
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
    }
    let elapsed = started.elapsed().as_secs_f64();
    let requests = consul.server().request_log().len();
    Ok((requests as f64 / elapsed, (consul.cpu_time() - cpu).as_secs_f64() / elapsed))
}
