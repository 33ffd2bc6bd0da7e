//! `viking-bench consul`: how fast Consul reaches the kernel. For 1,000 and 10,000
//! services registered in the in-repo Consul test server: the time of a full initial sync
//! (cold: the agent allocates every VIP in KV; warm: the VIPs exist, as after a restart or
//! on a second host), the time from one Consul change to the kernel map (p50/p99 over many
//! changes, measured by polling the pinned map), and the agent's resident memory.
//!
//! Nothing is sent over the network: the Consul server listens on 127.0.0.1 and the
//! instances' addresses are only written into maps (no connection is made to them).

mod agent;
mod report;

use std::{
    net::IpAddr,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use consul_test_server::{CheckSpec, ConsulTestServer, Options, Registration};
use viking_sandbox::Cgroup;

pub use report::write as write_report;

/// Service counts measured.
pub const SIZES: [u32; 2] = [1_000, 10_000];
/// Changes timed per size.
const CHANGES: usize = 200;
/// The logical port of every benchmark service (the instances' common port).
const PORT: u16 = 8080;
/// Longest a sync may take before the point is reported as failed.
const SYNC_LIMIT: Duration = Duration::from_secs(180);
/// Longest one change may take to reach the kernel.
const CHANGE_LIMIT: Duration = Duration::from_secs(10);

/// The results for one size.
#[derive(Debug)]
pub struct ConsulPoint {
    /// Services registered.
    pub services: u32,
    /// Initial sync with no VIP allocated yet.
    pub cold_sync: Duration,
    /// Initial sync with every VIP already in KV.
    pub warm_sync: Duration,
    /// After the warm sync, until every service's blocking health query is open (the
    /// agent opens them once it knows everything; changes are timed after that).
    pub settle: Duration,
    /// Change to kernel, each sample.
    pub changes: Vec<Duration>,
    /// Agent RSS after the changes, in KiB.
    pub rss_kib: u64,
}

/// Runs the Consul benchmark for every size.
pub fn run(agent_binary: &Path, work_dir: &Path) -> anyhow::Result<Vec<ConsulPoint>> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let mut points = Vec::new();
    for services in SIZES {
        eprintln!("viking-bench consul: {services} services");
        let server = runtime.block_on(ConsulTestServer::start(Options::default()))?;
        server.register_many((0..services).map(|i| instance(i, 0))).context("registering services")?;
        let cgroup = Cgroup::unique()?;
        let config = agent::config(&server, services);

        let cold = agent::Agent::start(agent_binary, &cgroup, work_dir, &config)?;
        let cold_sync = cold.wait_synced(services, SYNC_LIMIT)?;
        drop(cold);
        let warm = agent::Agent::start(agent_binary, &cgroup, work_dir, &config)?;
        let warm_sync = warm.wait_synced(services, SYNC_LIMIT)?;

        let settle = settle(&server, services)?;
        let mut changes = Vec::with_capacity(CHANGES);
        for sample in 0..CHANGES {
            let index = (sample as u32 * 7_919) % services;
            let vip = vip_of(&server, index)?;
            let started = Instant::now();
            server.register(instance(index, 1)).context("registering a second instance")?;
            warm.wait_backends(vip, PORT, 2, CHANGE_LIMIT)
                .with_context(|| format!("change {sample}: service {index} never got its second backend"))?;
            changes.push(started.elapsed());
        }
        let rss_kib = warm.rss_kib()?;
        drop(warm);
        points.push(ConsulPoint { services, cold_sync, warm_sync, settle, changes, rss_kib });
        runtime.block_on(server.stop());
    }
    Ok(points)
}

/// Waits until the server has received a blocking health query for every service.
fn settle(server: &ConsulTestServer, services: u32) -> anyhow::Result<Duration> {
    let started = Instant::now();
    while started.elapsed() < SYNC_LIMIT {
        let blocking = server
            .request_log()
            .iter()
            .filter(|r| r.index_param.is_some() && r.path.starts_with("/v1/health/service/"))
            .map(|r| r.path.clone())
            .collect::<std::collections::HashSet<_>>()
            .len();
        if blocking as u32 >= services {
            return Ok(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("the agent did not open a blocking query for each of {services} services")
}

/// Instance `copy` of service `index`, on a made-up routable address.
fn instance(index: u32, copy: u32) -> Registration {
    let name = format!("svc-{index:05}");
    let node = format!("node-{}", index % 64);
    let address = format!("10.{}.{}.{}", 100 + copy, (index / 250) % 250, 1 + index % 250);
    Registration::new(&node, &address, &name)
        .id(format!("{name}-{copy}"))
        .port(PORT)
        .service_address(&address)
        .check(CheckSpec::passing(format!("{name}-{copy}-check")))
}

/// The VIP the agents agreed on for service `index`, from Consul's KV.
fn vip_of(server: &ConsulTestServer, index: u32) -> anyhow::Result<IpAddr> {
    let key = format!("viking/services/svc-{index:05}");
    let Some(entry) = server.kv_get(&key) else { bail!("no VIP record {key}") };
    Ok(String::from_utf8_lossy(&entry.value).trim().parse()?)
}
