//! `viking-agent run`: install the dataplane, then keep the maps in sync with the sources
//! until SIGINT/SIGTERM. Stopping leaves programs and maps pinned: connects keep working
//! while no agent runs, and the next agent adopts them.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{SignalKind, signal},
    sync::mpsc,
};

use crate::{
    config::Config,
    dataplane::{Dataplane, pins::PinDir, sock_destroy},
    reconcile::{KernelWriter, Reconciler},
    sources::{SourceId, SourceSet, Snapshot, consul::ConsulSource, static_file::StaticFileSource},
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
    let limits = parsed.config.limits;
    let cgroup = match options.cgroup {
        Some(path) => path,
        None => viking_common::cgroup2::root().context("finding the cgroup v2 root (or pass --cgroup)")?,
    };
    let pins = PinDir::new(&options.pin_dir);
    let Dataplane { tables, mut ebpf, adopted } =
        Dataplane::install(&pins, &cgroup, &limits).context("installing the dataplane")?;
    match aya_log::EbpfLogger::init(&mut ebpf) {
        Ok(logger) => {
            tokio::spawn(forward_kernel_logs(logger));
        }
        Err(err) => tracing::warn!("kernel logs unavailable: {err}"),
    }

    let snapshot = tables.snapshot()?;
    let mut reconciler = Reconciler::adopt(tables, snapshot, limits)?;
    tracing::info!(
        cgroup = %cgroup.display(),
        pin_dir = %options.pin_dir.display(),
        adopted_services = reconciler.service_count(),
        "dataplane {}",
        if adopted { "adopted from pins" } else { "installed" }
    );

    let consul = match &parsed.config.consul {
        Some(settings) => {
            let source = ConsulSource::new(settings.clone(), parsed.config.agent.clone(), &limits)
                .context("setting up the Consul client")?;
            tracing::info!(url = %settings.url, "consul source enabled");
            Some(source)
        }
        None => None,
    };
    let mut expected = vec![SourceId::StaticFile];
    expected.extend(consul.is_some().then_some(SourceId::Consul));

    let mut source = StaticFileSource::new(options.config.clone(), &parsed.config, &reconciler.installed_state());
    let mut sources = SourceSet::default();
    sources.update(Snapshot { source: SourceId::StaticFile, state: source.first(text, parsed) });
    apply(&mut reconciler, &sources, &expected, &cgroup);
    tracing::info!(services = reconciler.service_count(), "ready");

    let (tx, mut rx) = mpsc::channel(16);
    if let Some(consul) = consul {
        tokio::spawn(consul.run(tx.clone()));
    }
    tokio::spawn(source.watch(tx));
    let mut sigterm = signal(SignalKind::terminate())?;
    loop {
        tokio::select! {
            Some(snapshot) = rx.recv() => {
                sources.update(snapshot);
                // Apply only the latest of a burst of snapshots.
                while let Ok(more) = rx.try_recv() {
                    sources.update(more);
                }
                apply(&mut reconciler, &sources, &expected, &cgroup);
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

/// Applies the merged sources and logs what changed. Until every source in `expected` has
/// reported once, nothing the kernel serves is removed: a restarted agent must not flush
/// services whose source (e.g. Consul) has not answered yet. UDP sockets still connected
/// to a backend that left every service are destroyed in the background, so their
/// applications reconnect to a live backend (see `dataplane::sock_destroy`).
fn apply<K: KernelWriter>(reconciler: &mut Reconciler<K>, sources: &SourceSet, expected: &[SourceId], cgroup: &Path) {
    let (mut desired, conflicts) = sources.merged();
    if !sources.has_all(expected) {
        for (frontend, service) in reconciler.installed_state().services {
            desired.services.entry(frontend).or_insert(service);
        }
    }
    for conflict in conflicts {
        tracing::error!("{conflict}");
    }
    let report = reconciler.apply(&desired);
    for added in &report.added {
        tracing::info!("added {added}");
    }
    for changed in &report.changed {
        tracing::info!("changed {changed}");
    }
    for removed in &report.removed {
        tracing::info!("removed {removed}");
    }
    for failed in &report.failed {
        tracing::error!("not applied: {failed}");
    }
    if !report.is_noop() {
        tracing::info!(writes = report.writes, services = reconciler.service_count(), "kernel maps updated");
    }
    if !report.released_backends.is_empty() {
        let (cgroup, gone) = (cgroup.to_path_buf(), report.released_backends);
        tokio::task::spawn_blocking(move || match sock_destroy::destroy_udp_connected_to(&cgroup, &gone) {
            Ok(0) => {}
            Ok(n) => tracing::info!("closed {n} UDP socket(s) connected to removed backends"),
            Err(err) => tracing::warn!("closing UDP sockets connected to removed backends: {err}"),
        });
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

/// Each watched Consul service holds one HTTP connection (a blocking query); a host with
/// thousands of services needs more than the usual 1024 descriptors.
fn raise_open_file_limit() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit with a valid struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}
