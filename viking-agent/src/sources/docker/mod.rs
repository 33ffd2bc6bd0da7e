//! Docker as a source of container identities: the containers (initial listing, then the
//! event stream: create, start, die, destroy), each with its cgroup id, name, image, labels,
//! environment and Nomad identity. A container is reported from its `create` event when its
//! cgroup can be known before it starts (see `cgroups`), so its policy is in the kernel
//! before its first instruction. When the stream breaks (dockerd restarted) the source
//! reconnects with backoff and lists everything again.

mod cgroups;
mod container;

pub use self::container::{from_create_event, from_inspect};

use std::{
    collections::{BTreeMap, HashMap},
    path::PathBuf,
    time::Duration,
};

use bollard::{
    Docker,
    models::ContainerInspectResponse,
    query_parameters::{EventsOptions, InspectContainerOptions, ListContainersOptions},
};
use cgroups::{CgroupLayout, Driver, cgroup_of};
use futures_util::StreamExt as _;
use tokio::sync::mpsc;

use viking_common::PolicyMode;

use super::{Update, backoff::Backoff};
use crate::{config::DockerSettings, model::Container};

/// Seconds bollard waits for dockerd's answers (the event stream itself has no timeout).
const DOCKER_TIMEOUT_SECS: u64 = 30;

/// The Docker source.
#[derive(Debug)]
pub struct DockerSource {
    settings: DockerSettings,
    cgroup2_root: PathBuf,
    metrics: crate::metrics::sources::AgentMetrics,
}

impl DockerSource {
    /// A source for dockerd at `settings.socket`.
    pub fn new(settings: DockerSettings) -> std::io::Result<Self> {
        let metrics = crate::metrics::sources::AgentMetrics::default();
        Ok(Self { settings, cgroup2_root: viking_common::cgroup2::root()?, metrics })
    }

    /// Reports events and reachability to `metrics`.
    pub fn with_metrics(self, metrics: crate::metrics::sources::AgentMetrics) -> Self {
        Self { metrics, ..self }
    }

    /// Follows dockerd until `tx` closes, sending the full container list after each change.
    pub async fn run(self, tx: mpsc::Sender<Update>) {
        let mut retry = Backoff::new(Duration::from_millis(200));
        let mut failing = false;
        loop {
            match self.follow(&tx, &mut failing, &mut retry).await {
                Ok(()) => return,
                Err(err) => {
                    self.metrics.docker_reachable.set(0);
                    if !failing {
                        tracing::error!(
                            "docker ({}): {err}; keeping the last known containers, reconnecting",
                            self.settings.socket
                        );
                        failing = true;
                    }
                    tokio::time::sleep(retry.next_delay()).await;
                }
            }
            if failing && tx.is_closed() {
                return;
            }
        }
    }

    /// One connection: list, then follow events until the stream ends. `Ok(())` only when
    /// the receiver is gone.
    async fn follow(
        &self,
        tx: &mpsc::Sender<Update>,
        failing: &mut bool,
        retry: &mut Backoff,
    ) -> Result<(), bollard::errors::Error> {
        let docker =
            Docker::connect_with_unix(&self.settings.socket, DOCKER_TIMEOUT_SECS, bollard::API_DEFAULT_VERSION)?;
        // Events since just before the listing: a container starting meanwhile is seen twice,
        // which is harmless, rather than never.
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs()
            .saturating_sub(1)
            .to_string();
        let filters = HashMap::from([
            ("type".to_owned(), vec!["container".to_owned()]),
            ("event".to_owned(), ["create", "start", "die", "destroy"].map(str::to_owned).to_vec()),
        ]);
        let mut events = docker.events(Some(EventsOptions { since: Some(since), until: None, filters: Some(filters) }));
        let info = docker.info().await?;
        let layout = CgroupLayout::new(
            self.cgroup2_root.clone(),
            Driver::from_info(info.cgroup_driver.as_ref().map(|d| d.as_ref())),
            self.settings.cgroup_parent.as_deref(),
        );
        self.announce(&layout);
        let mut known = Known::default();
        let listed = docker.list_containers(Some(ListContainersOptions { all: true, ..Default::default() })).await?;
        for summary in listed {
            if let Some(id) = summary.id {
                self.refresh(&docker, &layout, &id, &mut known).await;
            }
        }
        retry.reset();
        if *failing {
            tracing::info!("docker reachable again");
            *failing = false;
        }
        tracing::info!(containers = known.containers.len(), "docker: listed containers");
        self.metrics.docker_reachable.set(1);
        if !send(tx, &known, &layout).await {
            return Ok(());
        }
        while let Some(event) = events.next().await {
            let event = event?;
            let Some(actor) = event.actor else { continue };
            let Some(id) = actor.id else { continue };
            let action = event.action.clone().unwrap_or_default();
            self.metrics.docker_events.get_or_create(&crate::metrics::sources::EventLabels { action }).inc();
            match event.action.as_deref() {
                Some("create") => created(&layout, &id, &actor.attributes.unwrap_or_default(), &mut known),
                Some("start") => self.refresh(&docker, &layout, &id, &mut known).await,
                Some("destroy") => known.forget(&id, true),
                _ => known.forget(&id, false),
            }
            if !send(tx, &known, &layout).await {
                return Ok(());
            }
        }
        Err(bollard::errors::Error::IOError { err: std::io::Error::other("event stream ended (dockerd restarted?)") })
    }

    /// Logs where containers are expected, once per connection.
    fn announce(&self, layout: &CgroupLayout) {
        match (layout.parent(), layout.driver()) {
            (Some(parent), driver) => tracing::info!(
                cgroup_parent = parent,
                driver = ?driver,
                "docker: containers below cgroup {parent:?}; one without an entry yet gets the default mode ({})",
                self.settings.policy.name()
            ),
            (None, _) if self.settings.policy != PolicyMode::Off => tracing::warn!(
                "docker: systemd cgroup driver and no [docker] cgroup_parent: no kernel backstop for containers \
                 the agent has not seen yet (system.slice holds more than containers); give dockerd its own \
                 slice (\"cgroup-parent\" in daemon.json) and name it in cgroup_parent"
            ),
            (None, _) => {}
        }
    }
    /// Inspects one container and records it (or forgets it, if it is gone or stopped).
    async fn refresh(&self, docker: &Docker, layout: &CgroupLayout, id: &str, known: &mut Known) {
        let inspect = match docker.inspect_container(id, None::<InspectContainerOptions>).await {
            Ok(inspect) => inspect,
            Err(err) => {
                tracing::debug!("docker: container {id} vanished before inspection: {err}");
                known.forget(id, false);
                return;
            }
        };
        match self.cgroup(layout, id, &inspect, known) {
            Ok(Some(cgroup_id)) => {
                known.containers.insert(id.to_owned(), container::from_inspect(&inspect, cgroup_id));
            }
            Ok(None) => {
                known.containers.remove(id);
            }
            // A container that exits at once is gone before its `start` is handled; the entry
            // from its `create` stays until its `die`.
            Err(err) if known.containers.contains_key(id) => {
                tracing::debug!("docker: container {id}: its process is gone ({err}); keeping its entry from create")
            }
            Err(err) => tracing::warn!("docker: container {id}: cannot find its cgroup: {err}; it gets no policy"),
        }
    }

    /// The cgroup id of a running container (from its pid), or of a created one whose
    /// directory can be made in advance; `None` for any other state.
    fn cgroup(
        &self,
        layout: &CgroupLayout,
        id: &str,
        inspect: &ContainerInspectResponse,
        known: &mut Known,
    ) -> std::io::Result<Option<u64>> {
        let state = inspect.state.as_ref();
        if let Some(pid) = state.and_then(|s| s.pid).filter(|pid| *pid > 0) {
            let (dir, cgroup_id) = cgroup_of(pid, &self.cgroup2_root)?;
            if let Some(prepared) = known.prepared.get(id).filter(|prepared| **prepared != dir) {
                tracing::warn!(
                    "docker: container {id} runs in {}, not in {} where it was expected (its own \
                     --cgroup-parent, or [docker] cgroup_parent is not dockerd's)",
                    dir.display(),
                    prepared.display()
                );
                let _ = std::fs::remove_dir(prepared);
                known.prepared.remove(id);
            }
            return Ok(Some(cgroup_id));
        }
        let created = state.and_then(|s| s.status).is_some_and(|s| s.as_ref() == "created");
        if !created {
            return Ok(None);
        }
        let parent = inspect.host_config.as_ref().and_then(|h| h.cgroup_parent.as_deref());
        Ok(layout.prepare(id, parent)?.map(|(dir, cgroup_id)| {
            known.prepared.insert(id.to_owned(), dir);
            cgroup_id
        }))
    }
}

/// Records a created container from its event alone, when its cgroup can be made in advance.
/// No inspect: dockerd holds a container's lock while it starts it, and the CLI starts right
/// after creating, so an inspect now would usually wait until the container runs. (A
/// container with its own `--cgroup-parent` runs elsewhere; its `start` corrects that.)
fn created(layout: &CgroupLayout, id: &str, attributes: &HashMap<String, String>, known: &mut Known) {
    match layout.prepare(id, None) {
        Ok(Some((dir, cgroup_id))) => {
            known.prepared.insert(id.to_owned(), dir);
            known.containers.insert(id.to_owned(), container::from_create_event(id, attributes, cgroup_id));
        }
        Ok(None) => {}
        Err(err) => tracing::warn!("docker: container {id}: cannot prepare its cgroup: {err}; it is learned at start"),
    }
}

/// What one connection to dockerd knows.
#[derive(Debug, Default)]
struct Known {
    /// Containers by id.
    containers: BTreeMap<String, Container>,
    /// Cgroup directories made at `create`, by container id.
    prepared: HashMap<String, PathBuf>,
}

impl Known {
    /// Forgets a stopped container; a destroyed one also loses the directory made for it
    /// (runc removes the ones it used; an empty one left over is removed here).
    fn forget(&mut self, id: &str, destroyed: bool) {
        self.containers.remove(id);
        if destroyed && let Some(dir) = self.prepared.remove(id) {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// Sends the containers; `false` when the run loop is gone.
async fn send(tx: &mpsc::Sender<Update>, known: &Known, layout: &CgroupLayout) -> bool {
    let update = Update::Containers { containers: known.containers.values().cloned().collect(), scope: layout.scope() };
    tx.send(update).await.is_ok()
}
