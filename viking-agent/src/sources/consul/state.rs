//! The Consul source as a state machine with no I/O: what node, check and KV answers mean,
//! turned into changes for the run loop. The watcher set and the allocator feed it answers
//! and carry out what it asks for (start or stop a node's watches, allocate or release a
//! VIP); unit tests drive it directly.
//!
//! Work is proportional to what changed: an answer for one node marks the services whose
//! instances on it changed, and [`ConsulState::take_output`] (`output.rs`) builds only the
//! marked ones. The one exception is the first full report after the initial sync (every
//! service, once).

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use ipnet::IpNet;
use tokio::time::Instant;

use super::{
    allocator::Request,
    instances::{self, ReadContext, Reading, ServiceShape},
    nodes::{NodeView, NodeWatch},
    problems::ConsulProblem,
    vips::{Allocation, Keys, VipTable},
    wire::{CatalogNode, HealthEntry, KvEntry, NodeCheck, NodeServices},
};
use crate::model::{BackendSpec, Service, ServiceName, VipRanges, check_service_name};

mod output;

/// Consul's own service: never given a VIP.
const CONSUL_SERVICE: &str = "consul";
/// A release that did not happen (Consul failed, the record changed) is tried again
/// after this long.
const RELEASE_RETRY: Duration = Duration::from_secs(60);

/// What the state machine is configured with.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Only services with this tag get a VIP.
    pub tag: Option<String>,
    /// Where VIPs come from.
    pub vip_range: IpNet,
    /// The KV keys of the VIP records.
    pub keys: Keys,
    /// VIP ranges, which no backend may be inside.
    pub vip_ranges: VipRanges,
    /// `limits.max_backends_per_service`.
    pub max_backends: u16,
    /// How long a service must be gone before its VIP is released.
    pub release_after: Duration,
    /// This host's Consul node (loopback instances on it are local backends).
    pub local_node: Option<String>,
}

/// Node watches to start and stop after a node listing.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct NodePlan {
    /// Nodes that joined, with the generation of their services watch.
    pub start: Vec<(String, u64)>,
    /// Nodes that left.
    pub stop: Vec<String>,
}

/// The Consul source's knowledge. Its tables are keyed by the service's shared name (see
/// [`ConsulState::shared`]): at 100,000 services, one name each, not one per table.
#[derive(Debug)]
pub struct ConsulState {
    settings: Settings,
    /// Every node's instances and checks.
    nodes: NodeView,
    /// Whether the node list has been read.
    nodes_listed: bool,
    /// Nodes whose services or checks have not answered yet.
    awaiting: HashSet<String>,
    /// Services in the catalog that get a VIP (after the tag filter and name check).
    wanted: BTreeSet<ServiceName>,
    /// The usable backends of a wanted service's passing instances, from its last reading,
    /// while they differ from the backends of the service last sent (which then has them:
    /// see `output.rs`). Usually they do not, and the service sent is their one copy.
    backends: HashMap<ServiceName, Box<[BackendSpec]>>,
    /// The `connect_to` declarations of the last reading, for the services with any.
    declarations: HashMap<ServiceName, BTreeMap<String, BTreeSet<String>>>,
    /// The last shape seen per service, kept while no instance passes.
    shapes: HashMap<ServiceName, ServiceShape>,
    vips: VipTable,
    vips_loaded: bool,
    /// Wanted services without a VIP and no allocation running.
    missing: BTreeSet<ServiceName>,
    allocating: HashSet<ServiceName>,
    /// Services with a VIP that are not in the catalog, since when.
    absent_since: HashMap<ServiceName, Instant>,
    /// Watches failing now, with their error.
    failing: BTreeMap<String, String>,
    /// Problems last logged per key, so a repeated answer logs nothing new.
    problems: HashMap<String, Vec<ConsulProblem>>,
    /// What the run loop was last told, per service.
    sent: HashMap<ServiceName, Arc<Service>>,
    declarations_sent: HashMap<ServiceName, BTreeMap<String, BTreeSet<String>>>,
    /// Services whose output may have changed.
    dirty: HashSet<ServiceName>,
    synced: bool,
}

impl ConsulState {
    /// Nothing known yet.
    pub fn new(settings: Settings) -> Self {
        Self {
            settings,
            nodes: NodeView::default(),
            nodes_listed: false,
            awaiting: HashSet::new(),
            wanted: BTreeSet::new(),
            backends: HashMap::new(),
            declarations: HashMap::new(),
            shapes: HashMap::new(),
            vips: VipTable::default(),
            vips_loaded: false,
            missing: BTreeSet::new(),
            allocating: HashSet::new(),
            absent_since: HashMap::new(),
            failing: BTreeMap::new(),
            problems: HashMap::new(),
            sent: HashMap::new(),
            declarations_sent: HashMap::new(),
            dirty: HashSet::new(),
            synced: false,
        }
    }

    /// Whether the initial sync is done: the catalog, the VIP records and every service's
    /// first health answer are in.
    pub fn is_synced(&self) -> bool {
        self.synced
    }

    /// Watches failing now.
    pub fn failing(&self) -> usize {
        self.failing.len()
    }

    /// Takes the node list; returns the node watches to start and stop.
    pub fn on_nodes(&mut self, listed: &[CatalogNode]) -> NodePlan {
        self.nodes_listed = true;
        let listed: HashSet<&str> = listed.iter().map(|node| node.node.as_str()).collect();
        let mut plan = NodePlan::default();
        let gone: Vec<String> = self.nodes.names().filter(|name| !listed.contains(name)).map(str::to_owned).collect();
        for name in gone {
            for service in self.nodes.remove(&name) {
                self.refresh(&service);
            }
            self.awaiting.remove(&name);
            self.recovered(&node_watch(&name, NodeWatch::Services));
            self.recovered(&node_watch(&name, NodeWatch::Checks));
            plan.stop.push(name);
        }
        let mut joined: Vec<&str> = listed.into_iter().collect();
        joined.sort_unstable();
        for name in joined {
            if let Some(generation) = self.nodes.add(name) {
                self.awaiting.insert(name.to_owned());
                plan.start.push((name.to_owned(), generation));
            }
        }
        plan
    }

    /// Takes the services of `node` from its services watch `generation` (`None`: the node
    /// does not exist); returns the generation to (re)start its checks watch with, when its
    /// new instances wait for a checks answer read after them.
    pub fn on_node_services(&mut self, node: &str, generation: u64, answer: Option<NodeServices>) -> Option<u64> {
        if !self.nodes.is_current(node, NodeWatch::Services, generation) {
            return None;
        }
        let read = self.nodes.set_services(node, answer);
        for service in &read.changed {
            self.refresh(service);
        }
        if read.restart_checks.is_some() {
            // The stopped watch's failure, if any, goes with it; the new one reports its own.
            self.recovered(&node_watch(node, NodeWatch::Checks));
        }
        read.restart_checks
    }

    /// Takes the checks of `node` from its checks watch `generation`.
    pub fn on_node_checks(&mut self, node: &str, generation: u64, checks: &[NodeCheck]) {
        if !self.nodes.is_current(node, NodeWatch::Checks, generation) {
            return;
        }
        for service in self.nodes.set_checks(node, checks) {
            self.refresh(&service);
        }
        if self.nodes.is_read(node) {
            self.awaiting.remove(node);
        }
    }

    /// A node watch failed (`Some`) or answered again (`None`); a stopped or restarted
    /// watch's report is ignored.
    pub fn on_node_failure(&mut self, node: &str, watch: NodeWatch, generation: u64, error: Option<String>) {
        if self.nodes.is_current(node, watch, generation) {
            self.on_failure(&node_watch(node, watch), error);
        }
    }

    /// The shared copy of `name`: the node view's while a node hosts the service (its
    /// instances, the merge and the reconciler then share it too), else a new one.
    fn shared(&self, name: &str) -> ServiceName {
        self.nodes.shared_name(name)
    }

    /// Follows a change of `name`'s instances (by the name they share): whether it is
    /// wanted, and what passes.
    fn refresh(&mut self, name: &ServiceName) {
        let wanted = self.nodes.hosts(name) && self.admits(name);
        if wanted {
            if self.wanted.insert(name.clone()) {
                self.absent_since.remove(name);
                if self.vips.get(name).is_none() && !self.allocating.contains(name) {
                    self.missing.insert(name.clone());
                }
            }
            let entries = self.nodes.passing(name);
            self.read_instances(name, &entries);
        } else if self.wanted.remove(name) {
            self.backends.remove(name);
            self.declarations.remove(name);
            self.shapes.remove(name);
            self.problems.remove(&**name);
            self.missing.remove(name);
            if self.vips.get(name).is_some() {
                self.absent_since.insert(name.clone(), Instant::now());
            }
            tracing::info!("consul service {name:?} left the catalog");
        } else if !self.nodes.hosts(name) {
            self.problems.remove(&**name);
        }
        self.dirty.insert(name.clone());
    }

    /// Whether a service in the catalog gets a VIP: not Consul itself, with the tag when
    /// one is configured, and a name Viking can serve (else the name is reported).
    fn admits(&mut self, name: &str) -> bool {
        if name == CONSUL_SERVICE || self.settings.tag.as_ref().is_some_and(|tag| !self.nodes.has_tag(name, tag)) {
            return false;
        }
        match check_service_name(name) {
            Ok(()) => true,
            Err(error) => {
                self.log_problems(name, vec![ConsulProblem::ServiceName { service: name.to_owned(), error }]);
                false
            }
        }
    }

    /// Takes the passing instances of the wanted service `name`.
    fn read_instances(&mut self, name: &ServiceName, entries: &[HealthEntry]) {
        let context = ReadContext {
            vip_ranges: &self.settings.vip_ranges,
            max_backends: self.settings.max_backends,
            local_node: self.settings.local_node.as_deref(),
        };
        let Reading { shape, backends, declarations, problems } = instances::read(name, entries, &context);
        if let Some(shape) = shape {
            self.shapes.insert(name.clone(), shape);
        }
        self.log_problems(name, problems);
        self.backends.insert(name.clone(), backends.into_boxed_slice());
        if declarations.is_empty() {
            self.declarations.remove(name);
        } else {
            self.declarations.insert(name.clone(), declarations);
        }
    }

    /// Takes a listing of the VIP records, read at KV index `index`.
    pub fn on_vips(&mut self, index: u64, entries: &[KvEntry]) {
        let settings = &self.settings;
        let nodes = &self.nodes;
        let intern = |name: &str| nodes.shared_name(name);
        let (problems, changed) = self.vips.load(&settings.keys, entries, settings.vip_range, index, intern);
        self.log_problems("(vip allocations)", problems);
        self.vips_loaded = true;
        for name in changed {
            self.vip_changed(&name);
        }
    }

    /// Records a VIP this agent allocated (or found).
    pub fn on_allocated(&mut self, name: &str, allocation: Allocation) {
        self.allocation_ended(name);
        tracing::info!("consul service {name:?} has VIP {}", allocation.vip);
        self.vips.insert(self.shared(name), allocation);
        self.vip_changed(name);
    }

    /// Records that an allocation gave up for now (it is asked for again).
    pub fn on_allocation_failed(&mut self, name: &str) {
        self.allocation_ended(name);
        self.vip_changed(name);
    }

    fn allocation_ended(&mut self, name: &str) {
        self.allocating.remove(name);
        if self.allocating.is_empty() {
            // Dropped, not left empty: a cold start allocates every service at once, and
            // the set would keep that room (3 MB at 100,000 services).
            self.allocating = HashSet::new();
        }
    }

    /// Records a VIP this agent released.
    pub fn on_released(&mut self, name: &str) {
        tracing::info!("released the VIP of consul service {name:?}, gone for longer than the grace period");
        self.vips.remove(name);
        self.vip_changed(name);
    }

    /// A watch failed (`Some`) or answered again (`None`).
    pub fn on_failure(&mut self, watch: &str, error: Option<String>) {
        match error {
            Some(error) => {
                if self.failing.is_empty() {
                    tracing::error!("consul: {error}; keeping the last good state, retrying with backoff");
                }
                self.failing.insert(watch.to_owned(), error);
            }
            None => self.recovered(watch),
        }
    }

    fn recovered(&mut self, watch: &str) {
        if self.failing.remove(watch).is_some() && self.failing.is_empty() {
            tracing::info!("consul reachable again");
        }
    }

    /// A service's VIP appeared, changed or went: its output and allocation follow.
    fn vip_changed(&mut self, name: &str) {
        let wanted = self.wanted.contains(name);
        let has_vip = self.vips.get(name).is_some();
        if wanted && !has_vip && !self.allocating.contains(name) {
            self.missing.insert(self.shared(name));
        } else {
            self.missing.remove(name);
        }
        if !wanted && has_vip {
            if !self.absent_since.contains_key(name) {
                self.absent_since.insert(self.shared(name), Instant::now());
            }
        } else {
            self.absent_since.remove(name);
        }
        self.dirty.insert(self.shared(name));
    }

    /// Services to allocate a VIP for now (they count as allocating until
    /// [`ConsulState::on_allocated`]). Nothing before the VIP records are read, nor, at
    /// start, before every node has answered: then the whole catalog goes in full
    /// transactions instead of node by node.
    pub fn take_allocations(&mut self) -> Vec<Request> {
        let reading_nodes = !self.nodes_listed || !self.awaiting.is_empty();
        if !self.vips_loaded || (!self.synced && reading_nodes) {
            return Vec::new();
        }
        let names = std::mem::take(&mut self.missing);
        let range = self.settings.vip_range;
        names
            .into_iter()
            .map(|name| {
                let first_probe = self.vips.first_free_probe(range, &name);
                self.allocating.insert(name.clone());
                Request { name: name.to_string(), first_probe }
            })
            .collect()
    }

    /// VIPs of services absent from a readable catalog for longer than the grace period;
    /// none while any watch fails (an outage must not look like every service leaving).
    pub fn due_releases(&mut self, now: Instant) -> Vec<(String, Allocation)> {
        if !self.synced || !self.failing.is_empty() {
            return Vec::new();
        }
        let grace = self.settings.release_after;
        let vips = &self.vips;
        let due: Vec<(String, Allocation)> = self
            .absent_since
            .iter()
            .filter(|(_, since)| now.duration_since(**since) >= grace)
            .filter_map(|(name, _)| Some((name.to_string(), vips.get(name)?)))
            .collect();
        // Asked for once; if the release does not happen, again a little later.
        let retry_from = now.checked_sub(grace.saturating_sub(RELEASE_RETRY)).unwrap_or(now);
        for (name, _) in &due {
            if let Some(since) = self.absent_since.get_mut(name.as_str()) {
                *since = retry_from;
            }
        }
        due
    }

    /// Logs the problems of `key` when they differ from the last ones logged for it.
    fn log_problems(&mut self, key: &str, problems: Vec<ConsulProblem>) {
        if self.problems.get(key).map_or(problems.is_empty(), |last| *last == problems) {
            return;
        }
        for problem in &problems {
            tracing::warn!("{problem}");
        }
        if problems.is_empty() {
            self.problems.remove(key);
        } else {
            self.problems.insert(key.to_owned(), problems);
        }
    }
}

/// The name under which a node watch's failures are kept.
fn node_watch(node: &str, watch: NodeWatch) -> String {
    match watch {
        NodeWatch::Services => format!("services of node {node}"),
        NodeWatch::Checks => format!("checks of node {node}"),
    }
}

#[cfg(test)]
mod tests;
