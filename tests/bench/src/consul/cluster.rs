//! A cluster, simulated: many agents' control planes against one Consul test server with
//! 10,000 services and steady churn. One machine cannot run hundreds of hosts' kernels, so
//! each agent here is the agent's real Consul source, merge and reconciler over maps that
//! keep nothing (no kernel): everything a host does between Consul's answer and the map
//! write. Measured: how long until every agent has a change, the server's request rate
//! and CPU, and what the agents hold open on it.

use std::{
    collections::HashMap,
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use viking_agent::{
    config::Config,
    dataplane::tables::{KernelSnapshot, TableError},
    reconcile::{KernelWriter, Reconciler},
    sources::{SourceChange, Update, consul::ConsulSource, merge::SourceSet},
};
use viking_common::{ServiceKey, ServiceValue};

use super::{
    INSTANCES, agent, queries_for,
    server::{Consul, Instance, Transport, flip_check, nodes_for, register_all},
};

/// Agents simulated.
pub const AGENTS: usize = 50;
/// Services in the cluster.
pub const SERVICES: u32 = 10_000;
/// Changes whose convergence is timed.
const SAMPLES: usize = 50;
/// Check flips per second in the background while the samples are taken.
pub const CHURN_RATE: u32 = 20;
/// Longest the agents may take to sync.
const SYNC_LIMIT: Duration = Duration::from_secs(600);
/// Longest one change may take to reach every agent.
const CHANGE_LIMIT: Duration = Duration::from_secs(20);

/// What the simulated cluster measured.
#[derive(Debug)]
pub struct ClusterResult {
    /// From starting the other agents (the VIPs exist) until all of them had every service.
    pub sync: Duration,
    /// From the HTTP call registering a new instance until the last agent wrote it.
    pub converge: Vec<Duration>,
    /// Requests per second the server answered while the samples and the churn ran.
    pub server_rps: f64,
    /// The server's CPU share (of one core) meanwhile.
    pub server_cpu: f64,
    /// Blocking queries the agents held.
    pub blocking_queries: usize,
    /// TCP connections the agents held.
    pub connections: usize,
}

/// What an agent tells the driver.
#[derive(Debug)]
enum Event {
    /// Every service is installed.
    Synced,
    /// A service was rewritten with these backends.
    Changed { agent: usize, name: String, backends: Vec<std::net::SocketAddr>, at: Instant },
}

/// Runs the simulation.
pub fn run(work_dir: &std::path::Path) -> anyhow::Result<ClusterResult> {
    let consul = Consul::start(Transport::Https, work_dir)?;
    register_all(consul.server(), SERVICES, u32::from(INSTANCES))?;
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).thread_name("agents").enable_all().build()?;
    let config = agent::limits_and_consul(&consul, SERVICES + 16, SERVICES * 5, SERVICES * 6);
    let (events, reports) = mpsc::channel();
    let spawn = |agent: usize| {
        let (config, events) = (config.clone(), events.clone());
        runtime.spawn(async move {
            if let Err(err) = control_plane(agent, &config, events).await {
                eprintln!("viking-bench cluster: agent {agent}: {err:#}");
            }
        });
    };
    // The first agent allocates the VIPs; the others find them, as hosts joining do.
    spawn(0);
    wait_synced(&reports, 1)?;
    let started = Instant::now();
    (1..AGENTS).for_each(spawn);
    wait_synced(&reports, AGENTS - 1)?;
    let sync = started.elapsed();
    let settled = Instant::now();
    let queries = AGENTS * queries_for(nodes_for(SERVICES, u32::from(INSTANCES)));
    while consul.server().open_blocking_queries() < queries {
        if settled.elapsed() > SYNC_LIMIT {
            bail!("only {} blocking queries open", consul.server().open_blocking_queries());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let (blocking_queries, connections) = (consul.server().open_blocking_queries(), consul.server().open_connections());

    consul.server().clear_request_log();
    let cpu = consul.cpu_time();
    let measured = Instant::now();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let converge = std::thread::scope(|scope| {
        scope.spawn(|| churn(&consul, &stop));
        let result = samples(&consul, &reports);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        result
    })?;
    let elapsed = measured.elapsed().as_secs_f64();
    let server_rps = consul.server().request_log().len() as f64 / elapsed;
    let server_cpu = (consul.cpu_time() - cpu).as_secs_f64() / elapsed;
    drop(runtime);
    consul.stop();
    Ok(ClusterResult { sync, converge, server_rps, server_cpu, blocking_queries, connections })
}

/// Times [`SAMPLES`] new instances until every agent has written them.
fn samples(consul: &Consul, reports: &mpsc::Receiver<Event>) -> anyhow::Result<Vec<Duration>> {
    let mut converge = Vec::with_capacity(SAMPLES);
    for sample in 0..SAMPLES {
        crate::interrupt::check()?;
        let index = (sample as u32 * 7_919 + 13) % SERVICES;
        let name = Instance::name(index);
        let instance = Instance { index, copy: u32::from(INSTANCES), nodes: nodes_for(SERVICES, u32::from(INSTANCES)) };
        // The churn may have another instance of the service critical meanwhile: wait for
        // the new one, not for a count.
        let new_backend = instance.socket_addr()?;
        let started = Instant::now();
        consul.register_over_http(&instance)?;
        let mut arrived: HashMap<usize, Instant> = HashMap::new();
        while arrived.len() < AGENTS {
            let left = CHANGE_LIMIT.saturating_sub(started.elapsed());
            match reports.recv_timeout(left) {
                Ok(Event::Changed { agent, name: changed, backends, at })
                    if changed == name && backends.contains(&new_backend) =>
                {
                    arrived.entry(agent).or_insert(at);
                }
                Ok(_) => {}
                Err(_) => bail!("sample {sample}: {} of {AGENTS} agents got {name}'s new instance", arrived.len()),
            }
        }
        converge.push(arrived.values().max().map_or(Duration::ZERO, |last| last.duration_since(started)));
    }
    Ok(converge)
}

/// Flips checks between critical and passing at [`CHURN_RATE`] until `stop`.
fn churn(consul: &Consul, stop: &std::sync::atomic::AtomicBool) {
    let started = Instant::now();
    let mut flips = 0u32;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        flip_check(consul.server(), flips, SERVICES, 1);
        flips += 1;
        let due = started + Duration::from_secs_f64(f64::from(flips) / f64::from(CHURN_RATE));
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
    }
}

fn wait_synced(reports: &mpsc::Receiver<Event>, agents: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + SYNC_LIMIT;
    let mut synced = 0;
    while synced < agents {
        match reports.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(Event::Synced) => synced += 1,
            Ok(_) => {}
            Err(_) => bail!("{synced} of {agents} agents synced within {SYNC_LIMIT:?}"),
        }
    }
    Ok(())
}

/// One agent's control plane: the real Consul source, merge and reconciler.
async fn control_plane(agent: usize, config: &str, events: mpsc::Sender<Event>) -> anyhow::Result<()> {
    let config = Config::parse(config)?.config;
    let settings = config.consul.clone().context("no [consul] section")?;
    let source = ConsulSource::new(settings, config.agent.vip_ranges.clone(), &config.limits)?;
    let (tx, mut updates) = tokio::sync::mpsc::channel(64);
    tokio::spawn(source.run(tx));
    let mut reconciler = Reconciler::adopt(NoKernel, KernelSnapshot::default(), config.limits)?;
    let mut sources = SourceSet::default();
    let mut synced = false;
    while let Some(update) = updates.recv().await {
        let Update::Services { source, change } = update else { continue };
        let merged = match change {
            SourceChange::Replace(state) => sources.replace(source, state),
            SourceChange::Delta(changes) => sources.apply(source, changes),
        };
        let report = reconciler.apply_changes(merged.changes);
        let at = Instant::now();
        for service in &report.changed {
            let name = service.name.to_string();
            let backends = service.backends.iter().map(|backend| backend.addr).collect();
            let _ = events.send(Event::Changed { agent, name, backends, at });
        }
        if !synced && reconciler.service_count() == SERVICES as usize {
            synced = true;
            let _ = events.send(Event::Synced);
        }
    }
    Ok(())
}

/// Maps that accept every write and keep nothing: the reconciler keeps its own account of
/// what the kernel would hold.
#[derive(Debug)]
struct NoKernel;

impl KernelWriter for NoKernel {
    fn set_slot(&mut self, _: ServiceKey, _: ServiceValue) -> Result<(), TableError> {
        Ok(())
    }
    fn delete_slot(&mut self, _: &ServiceKey) -> Result<(), TableError> {
        Ok(())
    }
    fn set_backend(&mut self, _: u32, _: std::net::SocketAddr) -> Result<(), TableError> {
        Ok(())
    }
    fn clear_backend(&mut self, _: u32) -> Result<(), TableError> {
        Ok(())
    }
    fn begin_service(&mut self, _: u32, _: &str) -> Result<(), TableError> {
        Ok(())
    }
    fn set_outlier(&mut self, _: u32, _: viking_common::OutlierPolicy) -> Result<(), TableError> {
        Ok(())
    }
    fn set_name(&mut self, _: u32, _: &str) -> Result<(), TableError> {
        Ok(())
    }
    fn delete_name(&mut self, _: u32) -> Result<(), TableError> {
        Ok(())
    }
    fn forget_affinity(&mut self, _: u32, _: &std::collections::HashSet<u32>) -> Result<(), TableError> {
        Ok(())
    }
}
