//! The watcher set: the Consul source's blocking queries and the connections they use.
//!
//! - `/v1/catalog/nodes`: which nodes exist. It moves only when a node joins, leaves or
//!   changes (not with its services), and is paced.
//! - Per node, `/v1/catalog/node/:node` (its service instances) and
//!   `/v1/health/node/:node` (its checks): Consul wakes these only for writes on that node,
//!   so a change costs one node's answer, and an agent holds two queries per node of the
//!   cluster, whatever the number of services (see `nodes` for how the two are combined).
//! - `/v1/kv/<prefix>/services/?recurse`: the VIPs every agent agreed on. This agent's own
//!   allocations reach it directly, so this listing is paced slowly (other agents'
//!   releases, hand edits).
//!
//! Over HTTPS the watches are HTTP/2 streams on a few connections the client opens as they
//! fill (Consul's HTTPS API, like Go's HTTP/2 server, allows 250 concurrent streams per
//! connection): 500 nodes cost 1,002 queries on 5 connections. Over plain HTTP/1.1 every
//! outstanding query needs its own connection: two per node.

use std::{collections::HashMap, sync::Arc, time::Duration};

use bytes::Bytes;
use tokio::{
    sync::{Semaphore, mpsc, watch as flag},
    task::JoinHandle,
};

use super::{
    Event,
    client::{ConsulClient, ConsulError, decode},
    nodes::NodeWatch,
    vips::Keys,
    watch,
    wire::{CatalogNode, KvEntry, NodeCheck, NodeServices},
};

/// First (non-blocking) node queries running at once during the initial sync: over
/// HTTP/1.1, few enough that their connections are reused instead of opening one per
/// query.
const INITIAL_CONCURRENCY: usize = 64;
/// Pause before each blocking query of the node list (a full listing): a burst of node
/// changes costs a few reads, at most 20 a second. (A snapshot restore that lands during
/// the pause ends it: see `watch::Restores`.)
const NODES_PACE: Duration = Duration::from_millis(50);
/// The same for the VIP records (a full listing too).
const VIP_RECORDS_PACE: Duration = Duration::from_secs(5);

/// The running watches of the Consul source.
#[derive(Debug)]
pub struct Watchers {
    client: ConsulClient,
    /// Each node's two watches.
    nodes: HashMap<String, NodeWatches>,
    events: mpsc::UnboundedSender<Event>,
    /// Limits the first node queries.
    initial: Arc<Semaphore>,
    /// Holds the blocking node queries until the initial sync is done.
    synced: flag::Sender<bool>,
    /// Index resets seen by any watch: every watch starts over.
    restores: watch::Restores,
}

/// The watches of one node, stopped when dropped.
#[derive(Debug)]
struct NodeWatches {
    _services: DropAbort,
    /// Started after the first services answer, restarted for new instances.
    checks: Option<DropAbort>,
}

impl Watchers {
    /// No watch yet; answers go to `events`.
    pub fn new(client: ConsulClient, events: mpsc::UnboundedSender<Event>) -> Self {
        Self {
            client,
            nodes: HashMap::new(),
            events,
            initial: Arc::new(Semaphore::new(INITIAL_CONCURRENCY)),
            synced: flag::channel(false).0,
            restores: watch::Restores::default(),
        }
    }

    /// Lets the node watches start blocking (after the initial sync).
    pub fn set_synced(&self) {
        self.synced.send_if_modified(|done| !std::mem::replace(done, true));
    }

    /// Watches the node list.
    pub fn watch_nodes(&self) -> DropAbort {
        let client = self.client.clone();
        let reporter = self.reporter(Watched::Source("nodes"));
        let events = self.events.clone();
        DropAbort::spawn(watch::watch(
            move |index| {
                let client = client.clone();
                async move {
                    if index.is_some() {
                        tokio::time::sleep(NODES_PACE).await;
                    }
                    client.get_bytes("/v1/catalog/nodes", &[], index).await
                }
            },
            decoded(reporter.clone(), "/v1/catalog/nodes".into(), move |_, body| {
                let nodes = body.as_deref().map(decode::<Vec<CatalogNode>>).transpose()?;
                let _ = events.send(Event::Nodes(nodes.unwrap_or_default()));
                Ok(())
            }),
            move |error| reporter.report(error),
            self.restores.clone(),
            self.client.wait(),
        ))
    }

    /// Watches the VIP records.
    pub fn watch_vips(&self, keys: &Keys) -> DropAbort {
        let client = self.client.clone();
        let path = format!("/v1/kv/{}", keys.services_prefix());
        let reporter = self.reporter(Watched::Source("vip allocations"));
        let events = self.events.clone();
        DropAbort::spawn(watch::watch(
            move |index| {
                let (client, path) = (client.clone(), path.clone());
                async move {
                    if index.is_some() {
                        tokio::time::sleep(VIP_RECORDS_PACE).await;
                    }
                    client.get_bytes(&path, &[("recurse", "")], index).await
                }
            },
            decoded(reporter.clone(), "vip allocations".into(), move |index, body| {
                let entries = body.as_deref().map(decode::<Vec<KvEntry>>).transpose()?;
                let _ = events.send(Event::Vips { index, entries: entries.unwrap_or_default() });
                Ok(())
            }),
            move |error| reporter.report(error),
            self.restores.clone(),
            self.client.wait(),
        ))
    }

    /// Starts watching the services of `node` (watch `generation`).
    pub fn watch_node(&mut self, node: &str, generation: u64) {
        let services = self.node_watch(node, NodeWatch::Services, generation);
        self.nodes.insert(node.to_owned(), NodeWatches { _services: services, checks: None });
    }

    /// Starts the checks watch of `node` as `generation`, stopping the one running: its
    /// first answer is a read made now.
    pub fn watch_node_checks(&mut self, node: &str, generation: u64) {
        let checks = self.node_watch(node, NodeWatch::Checks, generation);
        if let Some(watches) = self.nodes.get_mut(node) {
            watches.checks = Some(checks);
        }
    }

    /// Stops the watches of `node`.
    pub fn unwatch_node(&mut self, node: &str) {
        self.nodes.remove(node);
    }

    /// One watch of a node: its first query answers at once, the next ones block once the
    /// initial sync is done.
    fn node_watch(&self, node: &str, watch: NodeWatch, generation: u64) -> DropAbort {
        let path = match watch {
            NodeWatch::Services => format!("/v1/catalog/node/{}", path_segment(node)),
            NodeWatch::Checks => format!("/v1/health/node/{}", path_segment(node)),
        };
        let client = self.client.clone();
        let reporter = self.reporter(Watched::Node { node: node.to_owned(), watch, generation });
        let (initial, synced) = (self.initial.clone(), self.synced.subscribe());
        let (events, owned) = (self.events.clone(), node.to_owned());
        DropAbort::spawn(watch::watch(
            {
                let path = path.clone();
                move |index| {
                    let (client, path, initial, mut synced) =
                        (client.clone(), path.clone(), initial.clone(), synced.clone());
                    async move {
                        let _permit = match index {
                            None => initial.acquire_owned().await.ok(),
                            Some(_) => {
                                let _ = synced.wait_for(|done| *done).await;
                                None
                            }
                        };
                        client.get_bytes(&path, &[], index).await
                    }
                }
            },
            decoded(reporter.clone(), path, move |_, body| {
                let node = owned.clone();
                let event = match watch {
                    NodeWatch::Services => {
                        let answer = body.as_deref().map(decode::<Option<NodeServices>>).transpose()?.flatten();
                        Event::NodeServices { node, generation, answer }
                    }
                    NodeWatch::Checks => {
                        let checks = body.as_deref().map(decode::<Vec<NodeCheck>>).transpose()?.unwrap_or_default();
                        Event::NodeChecks { node, generation, checks }
                    }
                };
                let _ = events.send(event);
                Ok(())
            }),
            move |error| reporter.report(error),
            self.restores.clone(),
            self.client.wait(),
        ))
    }

    fn reporter(&self, watch: Watched) -> Reporter {
        Reporter { events: self.events.clone(), watch }
    }
}

/// Where a watch's failures and recoveries go.
#[derive(Clone, Debug)]
struct Reporter {
    events: mpsc::UnboundedSender<Event>,
    watch: Watched,
}

/// Which watch reports.
#[derive(Clone, Debug)]
enum Watched {
    /// A watch of the source itself (`nodes`, `vip allocations`).
    Source(&'static str),
    /// One watch of a node, by generation.
    Node { node: String, watch: NodeWatch, generation: u64 },
}

impl Reporter {
    /// Sends a failure (`Some`) or recovery (`None`) to the source.
    fn report(&self, error: Option<&ConsulError>) {
        let error = error.map(ToString::to_string);
        let event = match &self.watch {
            Watched::Source(watch) => Event::Failure { watch: (*watch).to_owned(), error },
            Watched::Node { node, watch, generation } => {
                Event::NodeFailure { node: node.clone(), watch: *watch, generation: *generation, error }
            }
        };
        let _ = self.events.send(event);
    }
}

/// Wraps a watch's delivery: an answer that is not what the API documents counts as a
/// failing watch (its last good reading stays) until an answer decodes again.
fn decoded(
    reporter: Reporter,
    what: String,
    mut deliver: impl FnMut(u64, Option<Bytes>) -> Result<(), String>,
) -> impl FnMut(u64, Option<Bytes>) {
    let mut failing = false;
    move |index, body| match deliver(index, body) {
        Ok(()) if std::mem::take(&mut failing) => reporter.report(None),
        Ok(()) => {}
        Err(detail) => {
            failing = true;
            reporter.report(Some(&ConsulError::Decode { url: what.clone(), detail }));
        }
    }
}

/// A node name as one URL path segment (node names are DNS-like, but nothing enforces it).
fn path_segment(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Aborts a task when dropped (the source's long-lived watches).
#[derive(Debug)]
pub struct DropAbort(JoinHandle<()>);

impl DropAbort {
    /// Runs `task` until it ends or this is dropped.
    pub fn spawn(task: impl std::future::Future<Output = ()> + Send + 'static) -> Self {
        Self(tokio::spawn(task))
    }
}

impl Drop for DropAbort {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::path_segment;

    #[test]
    fn node_names_are_escaped_as_one_path_segment() {
        assert_eq!(path_segment("node-1.dc1"), "node-1.dc1");
        assert_eq!(path_segment("a/b c"), "a%2Fb%20c");
    }
}
