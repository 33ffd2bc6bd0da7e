//! `viking-agent run`: install the dataplane, then keep the maps in sync with the sources
//! until SIGINT/SIGTERM. Stopping leaves programs and maps pinned: connects keep working
//! while no agent runs, and the next agent adopts them.

use std::path::PathBuf;

use anyhow::Context as _;
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{SignalKind, signal},
    sync::mpsc,
};

use crate::{
    config::Config,
    dataplane::{Dataplane, pins::PinDir, tables::MapSource},
    dns::DnsServer,
    metrics::MetricsServer,
    policy::{
        audit,
        writer::{HostSettings, PolicyTables, PolicyWriter},
    },
    reconcile::Reconciler,
    runtime::{Runtime, RuntimeOptions},
    sources::{
        SourceChange, SourceId, Update, consul::ConsulSource, docker::DockerSource, static_file::StaticFileSource,
    },
};

/// Options of `run`.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The config file.
    pub config: PathBuf,
    /// The cgroup to attach to; `None` = the cgroup v2 root.
    pub cgroup: Option<PathBuf>,
    /// Where maps and links are pinned.
    pub pin_dir: PathBuf,
}

/// Runs the agent until a termination signal.
pub async fn run(options: RunOptions) -> anyhow::Result<()> {
    raise_open_file_limit();
    let text = std::fs::read_to_string(&options.config)
        .with_context(|| format!("reading config {}", options.config.display()))?;
    let parsed = Config::parse(&text).with_context(|| format!("config {}", options.config.display()))?;
    let config = parsed.config.clone();
    let cgroup = match options.cgroup {
        Some(path) => path,
        None => viking_common::cgroup2::root().context("finding the cgroup v2 root (or pass --cgroup)")?,
    };
    let pins = PinDir::new(&options.pin_dir);
    let Dataplane { tables, mut ebpf, adopted, limits, .. } =
        Dataplane::install(&pins, &cgroup, &config.limits).context("installing the dataplane")?;
    match aya_log::EbpfLogger::init(&mut ebpf) {
        Ok(logger) => {
            tokio::spawn(forward_kernel_logs(logger));
        }
        Err(err) => tracing::warn!("kernel logs unavailable: {err}"),
    }
    let (audit_tx, mut audit_rx) = mpsc::channel(1024);
    if let Err(err) = audit::forward(&mut ebpf, audit_tx) {
        tracing::warn!("policy audit events unavailable: {err}");
    }
    let policy_tables = PolicyTables::open(MapSource::Object(&mut ebpf))?;
    let host = HostSettings {
        ambassador: config.docker.as_ref().map(|d| d.ambassador),
        recent_sockets: limits.max_recent_sockets,
    };
    let policy = PolicyWriter::adopt(policy_tables, host)?;

    let snapshot = tables.snapshot()?;
    let reconciler = Reconciler::adopt(tables, snapshot, limits)?;
    tracing::info!(
        cgroup = %cgroup.display(),
        pin_dir = %options.pin_dir.display(),
        adopted_services = reconciler.service_count(),
        "dataplane {}",
        if adopted { "adopted from pins" } else { "installed" }
    );

    let agent_metrics = crate::metrics::sources::AgentMetrics::default();
    let consul = match &config.consul {
        Some(settings) => {
            let source = ConsulSource::new(settings.clone(), config.agent.vip_ranges.clone(), &limits)
                .context("setting up the Consul client")?
                .with_metrics(agent_metrics.clone());
            tracing::info!(url = %settings.url, "consul source enabled");
            Some(source)
        }
        None => None,
    };
    let docker = match &config.docker {
        Some(settings) => {
            tracing::info!(socket = %settings.socket, policy = settings.policy.name(), "docker source enabled");
            Some(
                DockerSource::new(settings.clone())
                    .context("setting up the Docker source")?
                    .with_metrics(agent_metrics.clone()),
            )
        }
        None => None,
    };
    let mut expected = vec![SourceId::StaticFile];
    expected.extend(consul.is_some().then_some(SourceId::Consul));
    let options_for_runtime =
        RuntimeOptions { expected, docker: config.docker.clone(), cgroup, metrics: agent_metrics.clone() };
    let mut runtime = Runtime::new(reconciler, policy, options_for_runtime);

    let mut source = StaticFileSource::new(options.config.clone(), &config, &runtime.installed_state());
    let first = source.first(text, parsed);
    runtime.handle(Update::Services { source: SourceId::StaticFile, change: SourceChange::Replace(first) });
    runtime.flush();
    // The DNS responder answers from what the kernel serves: a name never resolves to a VIP
    // that is not redirected.
    if let Some(settings) = &config.dns {
        let responses = agent_metrics.dns_responses.clone();
        let server =
            DnsServer::bind(settings, runtime.names(), responses).await.context("starting the DNS responder")?;
        tracing::info!(listen = ?server.local_addrs(), domain = %settings.domain, "dns responder enabled");
        tokio::spawn(async move {
            if let Err(err) = server.run().await {
                // With its cause, as the anyhow chain the binary's errors are printed with.
                tracing::error!("{:#}", anyhow::Error::new(err));
            }
        });
    }
    let (probe_tx, mut probe_rx) = mpsc::channel(16);
    if let Some(listen) = config.metrics.listen {
        let context = crate::metrics::EndpointContext {
            settings: config.metrics,
            pins: pins.clone(),
            cgroup: runtime.cgroup().to_owned(),
            agent: agent_metrics,
            consul: config.consul.is_some(),
            docker: config.docker.is_some(),
            dns: config.dns.is_some(),
        };
        start_metrics(listen, context, &pins, probe_tx).await;
    }
    tracing::info!(services = runtime.served().len(), "ready");

    let (tx, mut rx) = mpsc::channel(64);
    if let Some(consul) = consul {
        tokio::spawn(consul.run(tx.clone()));
    }
    if let Some(docker) = docker {
        tokio::spawn(docker.run(tx.clone()));
    }
    tokio::spawn(source.watch(tx));
    let mut sigterm = signal(SignalKind::terminate())?;
    loop {
        tokio::select! {
            Some(update) = rx.recv() => {
                runtime.handle(update);
                // Apply a burst of updates once.
                while let Ok(more) = rx.try_recv() {
                    runtime.handle(more);
                }
                runtime.flush();
            }
            Some(event) = audit_rx.recv() => runtime.audit(event),
            Some(probe) = probe_rx.recv() => {
                let _ = probe.reply.send(runtime.inventory(probe.max_services));
            }
            _ = tokio::signal::ctrl_c() => break,
            _ = sigterm.recv() => break,
        }
    }
    tracing::info!(
        "stopping; programs and maps stay pinned at {} so connects keep working \
         (`viking-agent uninstall` removes them)",
        options.pin_dir.display()
    );
    Ok(())
}

/// Starts the metrics endpoint. It failing to start is logged, not fatal: the dataplane
/// and its sources matter more than their metrics (and `/readyz` then fails visibly).
async fn start_metrics(
    listen: std::net::SocketAddr,
    context: crate::metrics::EndpointContext,
    pins: &PinDir,
    probes: mpsc::Sender<crate::metrics::Probe>,
) {
    let started = async {
        let tables = crate::dataplane::tables::KernelTables::open(MapSource::Pinned(pins))?;
        let server = MetricsServer::bind(listen, context, tables, probes).await?;
        anyhow::Ok(server)
    };
    match started.await {
        Ok(server) => {
            match server.local_addr() {
                Ok(addr) => tracing::info!(listen = %addr, "metrics endpoint enabled (/metrics, /healthz, /readyz)"),
                Err(err) => tracing::warn!("metrics endpoint: {err}"),
            }
            tokio::spawn(server.run());
        }
        Err(err) => tracing::error!("metrics endpoint on {listen} not started: {err:#}"),
    }
}

/// Forwards `aya-log` records from the kernel to the agent's log.
async fn forward_kernel_logs(logger: aya_log::EbpfLogger<&'static dyn log::Log>) {
    // SAFETY: the logger owns its ring buffer fd, which stays open and unchanged until the
    // logger (moved into the AsyncFd) is dropped.
    let registered = unsafe { AsyncFd::register_with_interest(logger, tokio::io::Interest::READABLE) };
    let mut fd = match registered {
        Ok(fd) => fd,
        Err(err) => {
            tracing::warn!("kernel logs unavailable: {err}");
            return;
        }
    };
    loop {
        let Ok(mut guard) = fd.readable_mut().await else {
            return;
        };
        guard.get_inner_mut().flush();
        guard.clear_ready();
    }
}

/// Over plain HTTP/1.1 each watched Consul service holds one connection (a blocking query);
/// a host with thousands of services then needs more than the usual 1024 descriptors.
fn raise_open_file_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    // The soft limit never exceeds the hard one, so "different" means "below".
    if limit.current != limit.maximum {
        // Best effort: the usual 1024 still serve a host with few services.
        let _ = setrlimit(Resource::Nofile, Rlimit { current: limit.maximum, ..limit });
    }
}
