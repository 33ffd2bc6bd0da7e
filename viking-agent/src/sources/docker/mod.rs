//! Docker as a source of container identities: the running containers (initial listing,
//! then the event stream: start, die, destroy), each with its cgroup id, name, labels,
//! environment and Nomad identity. When the stream breaks (dockerd restarted) the source
//! reconnects with backoff and lists everything again.

mod container;

use std::{
    collections::{BTreeMap, HashMap},
    path::PathBuf,
    time::Duration,
};

use bollard::{
    Docker,
    query_parameters::{EventsOptions, InspectContainerOptions, ListContainersOptions},
};
pub use container::{Container, NomadTask, cgroup_id_of};
use futures_util::StreamExt as _;
use tokio::sync::mpsc;

use super::{Update, backoff::Backoff};
use crate::config::DockerSettings;

/// Seconds bollard waits for dockerd's answers (the event stream itself has no timeout).
const DOCKER_TIMEOUT_SECS: u64 = 30;

/// The Docker source.
#[derive(Debug)]
pub struct DockerSource {
    settings: DockerSettings,
    cgroup2_root: PathBuf,
}

impl DockerSource {
    /// A source for dockerd at `settings.socket`.
    pub fn new(settings: DockerSettings) -> std::io::Result<Self> {
        Ok(Self { settings, cgroup2_root: viking_common::cgroup2::root()? })
    }

    /// Follows dockerd until `tx` closes, sending the full container list after each change.
    pub async fn run(self, tx: mpsc::Sender<Update>) {
        let mut retry = Backoff::new(Duration::from_millis(200));
        let mut failing = false;
        loop {
            match self.follow(&tx, &mut failing, &mut retry).await {
                Ok(()) => return,
                Err(err) => {
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
            ("event".to_owned(), vec!["start".to_owned(), "die".to_owned(), "destroy".to_owned()]),
        ]);
        let mut events = docker.events(Some(EventsOptions { since: Some(since), until: None, filters: Some(filters) }));
        let mut containers: BTreeMap<String, Container> = BTreeMap::new();
        let listed = docker.list_containers(Some(ListContainersOptions { all: false, ..Default::default() })).await?;
        for summary in listed {
            if let Some(id) = summary.id {
                self.refresh(&docker, &id, &mut containers).await;
            }
        }
        retry.reset();
        if *failing {
            tracing::info!("docker reachable again");
            *failing = false;
        }
        tracing::info!(containers = containers.len(), "docker: listed running containers");
        if tx.send(Update::Containers(containers.values().cloned().collect())).await.is_err() {
            return Ok(());
        }
        while let Some(event) = events.next().await {
            let event = event?;
            let Some(id) = event.actor.and_then(|a| a.id) else { continue };
            match event.action.as_deref() {
                Some("start") => self.refresh(&docker, &id, &mut containers).await,
                _ => {
                    containers.remove(&id);
                }
            }
            if tx.send(Update::Containers(containers.values().cloned().collect())).await.is_err() {
                return Ok(());
            }
        }
        Err(bollard::errors::Error::IOError { err: std::io::Error::other("event stream ended (dockerd restarted?)") })
    }

    /// Inspects one container and records it (or forgets it, if it is gone already).
    async fn refresh(&self, docker: &Docker, id: &str, containers: &mut BTreeMap<String, Container>) {
        let inspected = docker.inspect_container(id, None::<InspectContainerOptions>).await;
        let container = match inspected {
            Ok(inspect) => Container::from_inspect(&inspect, &self.cgroup2_root),
            Err(err) => {
                tracing::debug!("docker: container {id} vanished before inspection: {err}");
                containers.remove(id);
                return;
            }
        };
        match container {
            Ok(Some(container)) => {
                containers.insert(id.to_owned(), container);
            }
            Ok(None) => {
                containers.remove(id);
            }
            Err(err) => tracing::warn!("docker: container {id}: cannot find its cgroup: {err}; it gets no policy"),
        }
    }
}
