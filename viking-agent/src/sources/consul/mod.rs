//! Consul as a source: every service in Consul's catalog (optionally only those with a
//! tag) gets a stable VIP and its passing instances as backends. The catalog is watched
//! node by node (`watchers`), so what the agent holds open grows with the cluster's nodes,
//! not its services.
//!
//! The parts, one module each:
//! - `state`: what Consul's answers mean, as a state machine without I/O, and `nodes`, the
//!   instances and checks of every node it keeps;
//! - `watchers`: the blocking queries (the node list, two per node, the VIP records);
//! - `allocator` and `vips`: VIPs allocated in Consul's KV with check-and-set, many per
//!   transaction;
//! - `instances`: one service's instances as backends; `answers`: the answers read without
//!   I/O (the entry point of the fuzz target); `watch`: Consul's blocking-query rules;
//!   `client`, `streams` (HTTP/2 over HTTPS), `tls` and `wire`: HTTP and JSON.
//!
//! One task runs the state machine: it takes the answers as they come (a burst is taken
//! together), starts and stops watches, asks for allocations and releases, and sends the
//! run loop what changed. A failing watch keeps its last good reading (fail static), retries
//! with backoff, and blocks VIP releases until every watch answers again.

mod allocator;
mod answers;
mod client;
mod instances;
mod nodes;
mod problems;
mod state;
mod streams;
mod tls;
mod vips;
mod watch;
mod watchers;
mod wire;

use std::{sync::Arc, time::Duration};

use tokio::sync::{Semaphore, mpsc};

pub use self::answers::{AnswerReading, read_answer};
use self::{
    allocator::{Request, SERVICES_PER_TXN},
    client::{ConsulClient, ConsulError},
    nodes::NodeWatch,
    state::{ConsulState, NodePlan, Settings},
    vips::{Allocation, Keys},
    watchers::Watchers,
    wire::{AgentSelf, CatalogNode, KvEntry, NodeCheck, NodeServices},
};
use super::{Update, backoff::Backoff};
use crate::{
    config::ConsulSettings,
    model::{Limits, VipRanges},
};

/// Allocation transactions running at once.
const ALLOCATION_CONCURRENCY: usize = 4;
/// Answers taken together before the run loop hears of them (a burst, bounded so that a
/// long burst still reaches the kernel in steps).
const BURST: usize = 10_000;

/// Something a task learned.
#[derive(Debug)]
pub enum Event {
    /// The node list.
    Nodes(Vec<CatalogNode>),
    /// A node's service instances.
    NodeServices {
        /// The node.
        node: String,
        /// The generation of the watch that read them.
        generation: u64,
        /// The node and its instances; `None` when the node does not exist.
        answer: Option<NodeServices>,
    },
    /// A node's checks.
    NodeChecks {
        /// The node.
        node: String,
        /// The generation of the watch that read them.
        generation: u64,
        /// Its checks and its instances' checks.
        checks: Vec<NodeCheck>,
    },
    /// A node watch failed (`Some`) or recovered (`None`).
    NodeFailure {
        /// The node.
        node: String,
        /// Which of its watches.
        watch: NodeWatch,
        /// The watch's generation.
        generation: u64,
        /// The error.
        error: Option<String>,
    },
    /// The VIP records, read at KV index `index`.
    Vips {
        /// `X-Consul-Index` of the listing.
        index: u64,
        /// The records.
        entries: Vec<KvEntry>,
    },
    /// A VIP allocated (or found) for a service.
    Allocated {
        /// The service.
        name: String,
        /// Its VIP record.
        allocation: Allocation,
    },
    /// A service's allocation gave up for now.
    AllocationFailed {
        /// The service.
        name: String,
    },
    /// A service's VIP was released.
    Released {
        /// The service.
        name: String,
    },
    /// A watch failed (`Some`) or recovered (`None`).
    Failure {
        /// Which watch.
        watch: String,
        /// The error.
        error: Option<String>,
    },
}

/// The Consul source.
#[derive(Debug)]
pub struct ConsulSource {
    settings: ConsulSettings,
    vip_ranges: VipRanges,
    max_backends: u16,
    client: ConsulClient,
    keys: Keys,
    metrics: crate::metrics::sources::AgentMetrics,
}

impl ConsulSource {
    /// A source for `settings`; fails only when the client cannot be built (TLS files).
    pub fn new(settings: ConsulSettings, vip_ranges: VipRanges, limits: &Limits) -> Result<Self, ConsulError> {
        let client = ConsulClient::new(&settings)?;
        let keys = Keys::new(&settings.kv_prefix);
        let metrics = crate::metrics::sources::AgentMetrics::default();
        Ok(Self { settings, vip_ranges, max_backends: limits.max_backends_per_service, client, keys, metrics })
    }

    /// Reports reachability, answers and errors to `metrics`.
    pub fn with_metrics(self, metrics: crate::metrics::sources::AgentMetrics) -> Self {
        Self { metrics, ..self }
    }

    /// Watches Consul until `tx` closes: the full state once synced, then changes.
    pub async fn run(self, tx: mpsc::Sender<Update>) {
        let local_node = local_node(&self.client, &self.settings.url).await;
        let (events_tx, mut events) = mpsc::unbounded_channel();
        let mut state = ConsulState::new(Settings {
            tag: self.settings.tag.clone(),
            vip_range: self.settings.vip_range,
            keys: self.keys.clone(),
            vip_ranges: self.vip_ranges.clone(),
            max_backends: self.max_backends,
            release_after: self.settings.vip_release_after,
            local_node,
        });
        let mut watchers = Watchers::new(self.client.clone(), events_tx.clone());
        let _nodes = watchers.watch_nodes();
        let _vips = watchers.watch_vips(&self.keys);
        let allocations = Arc::new(Semaphore::new(ALLOCATION_CONCURRENCY));
        let tick = (self.settings.vip_release_after / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
        let mut release_tick = tokio::time::interval(tick);
        loop {
            tokio::select! {
                Some(event) = events.recv() => {
                    self.handle(&mut state, &mut watchers, event);
                    for _ in 1..BURST {
                        let Ok(event) = events.try_recv() else { break };
                        self.handle(&mut state, &mut watchers, event);
                    }
                    for batch in state.take_allocations().chunks(SERVICES_PER_TXN) {
                        self.spawn_allocation(batch.to_vec(), &allocations, &events_tx);
                    }
                    let output = state.take_output();
                    if state.is_synced() {
                        watchers.set_synced();
                        self.metrics.consul_synced.set(1);
                    }
                    if let Some(change) = output.services
                        && tx.send(Update::Services { source: super::SourceId::Consul, change }).await.is_err()
                    {
                        return;
                    }
                    for (service, declarations) in output.declarations {
                        if tx.send(Update::ConsulDeclarations { service, declarations }).await.is_err() {
                            return;
                        }
                    }
                }
                _ = release_tick.tick() => {
                    for (name, allocation) in state.due_releases(tokio::time::Instant::now()) {
                        self.spawn_release(name, allocation, &events_tx);
                    }
                }
            }
        }
    }

    /// Feeds one event to the state machine and starts or stops the watches it asks for.
    fn handle(&self, state: &mut ConsulState, watchers: &mut Watchers, event: Event) {
        match &event {
            Event::Nodes(_) | Event::NodeServices { .. } | Event::NodeChecks { .. } | Event::Vips { .. } => {
                self.metrics.consul_last_answer.set(crate::metrics::sources::unix_now());
            }
            Event::Failure { error: Some(_), .. } | Event::NodeFailure { error: Some(_), .. } => {
                self.metrics.consul_watch_errors.inc();
            }
            _ => {}
        }
        self.dispatch(state, watchers, event);
        let failing = state.failing();
        self.metrics.consul_watches_failing.set(i64::try_from(failing).unwrap_or(i64::MAX));
        self.metrics.consul_reachable.set(i64::from(failing == 0));
    }

    fn dispatch(&self, state: &mut ConsulState, watchers: &mut Watchers, event: Event) {
        match event {
            Event::Nodes(nodes) => apply(watchers, &state.on_nodes(&nodes)),
            Event::NodeServices { node, generation, answer } => {
                if let Some(checks) = state.on_node_services(&node, generation, answer) {
                    watchers.watch_node_checks(&node, checks);
                }
            }
            Event::NodeChecks { node, generation, checks } => state.on_node_checks(&node, generation, &checks),
            Event::NodeFailure { node, watch, generation, error } => {
                state.on_node_failure(&node, watch, generation, error);
            }
            Event::Vips { index, entries } => state.on_vips(index, &entries),
            Event::Allocated { name, allocation } => state.on_allocated(&name, allocation),
            Event::AllocationFailed { name } => state.on_allocation_failed(&name),
            Event::Released { name } => state.on_released(&name),
            Event::Failure { watch, error } => state.on_failure(&watch, error),
        }
    }

    /// Allocates VIPs for a batch of services, retrying with backoff until Consul answers;
    /// a service that cannot get one now is handed back (and asked for again later).
    fn spawn_allocation(&self, batch: Vec<Request>, slots: &Arc<Semaphore>, events: &mpsc::UnboundedSender<Event>) {
        let (client, keys, range) = (self.client.clone(), self.keys.clone(), self.settings.vip_range);
        let (slots, events) = (slots.clone(), events.clone());
        tokio::spawn(async move {
            let Ok(_slot) = slots.acquire_owned().await else { return };
            let mut backoff = Backoff::new(Duration::from_millis(200));
            loop {
                match allocator::allocate_batch(&client, &keys, range, &batch).await {
                    Ok(outcomes) => {
                        for (name, outcome) in outcomes {
                            let event = match outcome {
                                Ok(allocation) => Event::Allocated { name, allocation },
                                Err(err) => {
                                    tracing::warn!("allocating a VIP for consul service {name:?}: {err}; retrying");
                                    Event::AllocationFailed { name }
                                }
                            };
                            let _ = events.send(event);
                        }
                        return;
                    }
                    Err(err) => {
                        tracing::warn!("allocating VIPs for {} consul services: {err}; retrying", batch.len());
                        tokio::time::sleep(backoff.next_delay()).await;
                    }
                }
            }
        });
    }

    /// Releases a VIP with check-and-set on the record seen.
    fn spawn_release(&self, name: String, allocation: Allocation, events: &mpsc::UnboundedSender<Event>) {
        let (client, keys, events) = (self.client.clone(), self.keys.clone(), events.clone());
        tokio::spawn(async move {
            match vips::release(&client, &keys, &name, allocation).await {
                Ok(true) => {
                    let _ = events.send(Event::Released { name });
                }
                // Changed meanwhile (re-allocated, or released by another agent).
                Ok(false) => {}
                Err(err) => tracing::warn!("releasing the VIP of consul service {name:?}: {err}"),
            }
        });
    }
}

/// Starts and stops the node watches `plan` asks for.
fn apply(watchers: &mut Watchers, plan: &NodePlan) {
    for node in &plan.stop {
        watchers.unwatch_node(node);
    }
    for (node, generation) in &plan.start {
        watchers.watch_node(node, *generation);
    }
}

/// This host's Consul node, when Viking talks to a Consul agent on this host (a loopback
/// address): the agent's own node (`/v1/agent/self`), or, when that is not readable (it
/// needs `agent:read`), the only node of a single-node datacenter (a dev agent). Retries
/// with backoff while Consul does not answer at all.
async fn local_node(client: &ConsulClient, url: &str) -> Option<String> {
    if !is_loopback_url(url) {
        tracing::info!(
            "consul: {url} is not on this host's loopback, so loopback instances (dev agents) are not used as backends"
        );
        return None;
    }
    let mut backoff = Backoff::new(Duration::from_millis(200));
    let mut logged = false;
    let node = loop {
        let error = match client.get::<AgentSelf>("/v1/agent/self", &[], None).await {
            Ok(answer) => break answer.body.map(|a| a.config.node_name),
            Err(err) if is_refusal(&err) => {
                match client.get::<Vec<CatalogNode>>("/v1/catalog/nodes", &[], None).await {
                    Ok(answer) => match answer.body.unwrap_or_default().as_slice() {
                        [only] => break Some(only.node.clone()),
                        _ => break None,
                    },
                    Err(err) if is_refusal(&err) => break None,
                    Err(err) => err,
                }
            }
            Err(err) => err,
        };
        if !std::mem::replace(&mut logged, true) {
            tracing::error!("consul: {error}; keeping the last good state, retrying with backoff");
        }
        tokio::time::sleep(backoff.next_delay()).await;
    };
    if logged {
        tracing::info!("consul reachable again");
    }
    match &node {
        Some(node) => tracing::info!("consul: this host's Consul node is {node:?}"),
        None => tracing::info!("consul: this host's Consul node is unknown; loopback instances are not used"),
    }
    node
}

/// Whether Consul answered that it will not tell (no ACL permission, no such endpoint, an
/// answer of another shape): asking again will not help.
fn is_refusal(error: &ConsulError) -> bool {
    match error {
        ConsulError::Status { status, .. } => status.is_client_error(),
        ConsulError::Decode { .. } => true,
        _ => false,
    }
}

/// Whether a Consul URL names this host's loopback (`127.0.0.0/8`, `::1`, `localhost`).
fn is_loopback_url(url: &str) -> bool {
    let authority = url.split("://").nth(1).unwrap_or(url).split('/').next().unwrap_or_default();
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
        _ => authority,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::is_loopback_url;

    #[test]
    fn loopback_urls_are_this_host() {
        for url in ["http://127.0.0.1:8500", "https://localhost:8501", "http://[::1]:8500", "http://127.0.0.2"] {
            assert!(is_loopback_url(url), "{url}");
        }
        for url in ["http://10.0.0.1:8500", "https://consul.service:8501", "http://[fd00::1]:8500"] {
            assert!(!is_loopback_url(url), "{url}");
        }
    }
}
