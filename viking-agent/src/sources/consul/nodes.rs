//! What the agent knows of each Consul node: its service instances
//! (`/v1/catalog/node/:node`) and which of them pass their checks
//! (`/v1/health/node/:node`), and from both each service's passing instances, as
//! `/v1/health/service/:name?passing` would list them: an instance passes when every check
//! of its own and of its node is `passing`
//! (developer.hashicorp.com/consul/api-docs/health#passing).
//!
//! The two answers of a node come from two queries, so a new instance may be seen before
//! its checks (Consul registers a service and its checks in one write, and a check starts
//! `critical`). A new instance therefore counts only once a checks answer *read after it*
//! has come in: the source restarts the node's checks watch, whose first answer is such a
//! read, and the instance is unconfirmed until then. Every watch carries a generation
//! (one counter for all nodes), so an answer or failure of a watch that was stopped or
//! restarted is recognised and ignored.
//!
//! Work per answer is proportional to the node (its instances) and to the services whose
//! instances changed, never to the whole catalog.

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    sync::Arc,
};

use super::{
    instances::META_PREFIX,
    wire::{HealthEntry, Node, NodeCheck, NodeServices, ServiceInstance},
};

/// The check status that lets an instance be used.
const PASSING: &str = "passing";
/// The `ServiceID` of a node's own checks, which hold every instance on the node.
const NODE_CHECK: &str = "";

/// Every watched node's instances and failing checks, with an index from service name to
/// the nodes that host it.
#[derive(Debug, Default)]
pub struct NodeView {
    nodes: HashMap<Arc<str>, NodeState>,
    /// Service name → the nodes with an instance of it (a few, so a vector).
    /// The key is the one copy of the name its instances share.
    hosts: HashMap<Arc<str>, Vec<Arc<str>>>,
    /// The last watch generation handed out.
    generation: u64,
}

/// One node. Its instances are one sorted vector, not maps by service and ID: at 10,000
/// services that is a third of the memory.
#[derive(Debug, Default)]
struct NodeState {
    /// The node's name, shared with the index of services to nodes.
    name: Arc<str>,
    /// Name and address, from the last services answer (`None` before it, or when the node
    /// no longer exists).
    node: Option<Node>,
    /// Instances, sorted by service name, then instance ID.
    instances: Vec<ServiceInstance>,
    /// Checks that are not passing: instance ID ([`NODE_CHECK`] for the node's own) →
    /// service name.
    failing: HashMap<String, String>,
    /// Instances no checks answer read after them has covered yet.
    unconfirmed: HashSet<Box<str>>,
    /// The generation of the services watch.
    services_watch: u64,
    /// The generation of the checks watch (0: not started).
    checks_watch: u64,
    /// Whether the services watch and the current checks watch have answered.
    services_read: bool,
    checks_read: bool,
}

/// Which of a node's two watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeWatch {
    /// `/v1/catalog/node/:node`.
    Services,
    /// `/v1/health/node/:node`.
    Checks,
}

/// What a services answer means for the node's watches and services.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ServicesRead {
    /// Services whose instances on this node changed (by their shared name).
    pub changed: BTreeSet<Arc<str>>,
    /// Start (or restart) the node's checks watch with this generation: new instances
    /// appeared and wait for a checks answer read after them.
    pub restart_checks: Option<u64>,
}

impl NodeView {
    /// Starts knowing `node`; returns the generation of its services watch (`None` when it
    /// is known already).
    pub fn add(&mut self, node: &str) -> Option<u64> {
        if self.nodes.contains_key(node) {
            return None;
        }
        self.generation += 1;
        let name: Arc<str> = Arc::from(node);
        let state = NodeState { name: Arc::clone(&name), services_watch: self.generation, ..NodeState::default() };
        self.nodes.insert(name, state);
        Some(self.generation)
    }

    /// Forgets `node`; returns the services it hosted.
    pub fn remove(&mut self, node: &str) -> BTreeSet<Arc<str>> {
        let Some(state) = self.nodes.remove(node) else { return BTreeSet::new() };
        let changed: BTreeSet<Arc<str>> = service_names(&state.instances).cloned().collect();
        for service in &changed {
            self.unhost(service, node);
        }
        changed
    }

    /// The nodes known.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.nodes.keys().map(|name| &**name)
    }

    /// Whether `generation` is the current watch of that kind on `node` (a stopped or
    /// restarted watch's answers and failures are not).
    pub fn is_current(&self, node: &str, watch: NodeWatch, generation: u64) -> bool {
        self.nodes.get(node).is_some_and(|state| match watch {
            NodeWatch::Services => state.services_watch == generation,
            NodeWatch::Checks => state.checks_watch == generation,
        })
    }

    /// Whether both watches of `node` have answered (the checks watch after the last new
    /// instance).
    pub fn is_read(&self, node: &str) -> bool {
        self.nodes.get(node).is_some_and(|state| state.services_read && state.checks_read)
    }

    /// Takes a services answer of the current watch (`None`: the node does not exist).
    pub fn set_services(&mut self, node: &str, answer: Option<NodeServices>) -> ServicesRead {
        let Some(state) = self.nodes.get_mut(node) else { return ServicesRead::default() };
        let name = Arc::clone(&state.name);
        let (info, mut instances) = match answer {
            Some(answer) => {
                let mut instances: Vec<ServiceInstance> = answer.services.into_iter().map(kept).collect();
                // Exactly as long as the node's instances (decoding grew it by doubling).
                instances.shrink_to_fit();
                (Some(answer.node), instances)
            }
            None => (None, Vec::new()),
        };
        instances.sort_unstable_by(|a, b| (&a.service, &a.id).cmp(&(&b.service, &b.id)));
        share_names(&mut instances, &self.hosts);
        let old_names: BTreeSet<&Arc<str>> = service_names(&state.instances).collect();
        let new_names: BTreeSet<&Arc<str>> = service_names(&instances).collect();
        let address_changed = state.node != info;
        let changed: BTreeSet<Arc<str>> = old_names
            .union(&new_names)
            .filter(|service| {
                address_changed || of_service(&state.instances, service) != of_service(&instances, service)
            })
            .map(|service| Arc::clone(service))
            .collect();
        let gone: Vec<Arc<str>> = old_names.difference(&new_names).map(|s| Arc::clone(s)).collect();
        let added: Vec<Arc<str>> = new_names.difference(&old_names).map(|s| Arc::clone(s)).collect();
        let first = !state.services_read;
        let known: HashSet<&str> = state.instances.iter().map(|i| &*i.id).collect();
        let mut new = false;
        for instance in &instances {
            if first || !known.contains(&*instance.id) {
                state.unconfirmed.insert(instance.id.clone());
                new = true;
            }
        }
        let present: HashSet<&str> = instances.iter().map(|i| &*i.id).collect();
        state.unconfirmed.retain(|id| present.contains(&**id));
        state.node = info;
        state.instances = instances;
        state.services_read = true;
        let restart_checks = if first || new {
            self.generation += 1;
            state.checks_watch = self.generation;
            state.checks_read = false;
            Some(self.generation)
        } else {
            None
        };
        for service in gone {
            self.unhost(&service, node);
        }
        for service in added {
            let nodes = self.hosts.entry(service).or_default();
            // One node more, not the room for four a first push takes.
            nodes.reserve_exact(1);
            nodes.push(Arc::clone(&name));
        }
        ServicesRead { changed, restart_checks }
    }

    /// Takes a checks answer of the current checks watch; returns the services whose
    /// passing instances on this node changed.
    pub fn set_checks(&mut self, node: &str, checks: &[NodeCheck]) -> BTreeSet<Arc<str>> {
        let hosts = &self.hosts;
        let Some(state) = self.nodes.get_mut(node) else { return BTreeSet::new() };
        let failing: HashMap<String, String> = checks
            .iter()
            .filter(|check| check.status != PASSING)
            .map(|check| (check.service_id.clone(), check.service_name.clone()))
            .collect();
        let mut changed = BTreeSet::new();
        if failing.contains_key(NODE_CHECK) != state.failing.contains_key(NODE_CHECK) {
            changed.extend(service_names(&state.instances).cloned());
        }
        for (id, service) in failing.iter().chain(&state.failing) {
            if id != NODE_CHECK && failing.contains_key(id) != state.failing.contains_key(id) {
                changed.insert(shared_name(hosts, service));
            }
        }
        let confirmed = state.instances.iter().filter(|i| state.unconfirmed.contains(&i.id));
        changed.extend(confirmed.map(|i| Arc::clone(&i.service)));
        state.failing = failing;
        // Dropped, not cleared: a node's first answer makes every instance unconfirmed, and
        // a cleared set would keep that room for good (600 nodes: 1 MB).
        state.unconfirmed = HashSet::new();
        state.checks_read = true;
        changed
    }

    /// The name of `service` its instances share while a node hosts one, else a new one.
    pub fn shared_name(&self, service: &str) -> Arc<str> {
        shared_name(&self.hosts, service)
    }

    /// Whether any node hosts an instance of `service`, passing or not.
    pub fn hosts(&self, service: &str) -> bool {
        self.hosts.contains_key(service)
    }

    /// Whether an instance of `service` has `tag` (Consul's catalog lists a service with
    /// the tags of all its instances).
    pub fn has_tag(&self, service: &str, tag: &str) -> bool {
        self.instances(service).any(|(_, _, instance)| instance.tags.iter().flatten().any(|t| &**t == tag))
    }

    /// The passing instances of `service`, confirmed by a checks answer.
    pub fn passing(&self, service: &str) -> Vec<HealthEntry> {
        self.instances(service)
            .filter(|(state, _, instance)| {
                !state.failing.contains_key(NODE_CHECK)
                    && !state.failing.contains_key(&*instance.id)
                    && !state.unconfirmed.contains(&instance.id)
            })
            .map(|(_, node, instance)| HealthEntry { node: node.clone(), service: instance.clone() })
            .collect()
    }

    /// Every instance of `service` with its node.
    fn instances<'a>(
        &'a self,
        service: &'a str,
    ) -> impl Iterator<Item = (&'a NodeState, &'a Node, &'a ServiceInstance)> {
        self.hosts
            .get(service)
            .into_iter()
            .flatten()
            .filter_map(move |name| {
                let state = self.nodes.get(name)?;
                let node = state.node.as_ref()?;
                Some(of_service(&state.instances, service).iter().map(move |instance| (state, node, instance)))
            })
            .flatten()
    }

    fn unhost(&mut self, service: &str, node: &str) {
        if let Some(nodes) = self.hosts.get_mut(service) {
            nodes.retain(|name| &**name != node);
            if nodes.is_empty() {
                self.hosts.remove(service);
            }
        }
    }
}

/// An instance as kept: only the metadata Viking reads (`viking_*`); Nomad and others
/// add keys of their own to every instance.
fn kept(mut instance: ServiceInstance) -> ServiceInstance {
    if let Some(meta) = &mut instance.meta {
        meta.retain(|key, _| key.starts_with(META_PREFIX));
        if meta.is_empty() {
            instance.meta = None;
        }
    }
    instance
}

/// The name of `service` in the index of hosted services, or a new one.
fn shared_name(hosts: &HashMap<Arc<str>, Vec<Arc<str>>>, service: &str) -> Arc<str> {
    hosts.get_key_value(service).map_or_else(|| service.into(), |(name, _)| Arc::clone(name))
}

/// Makes the instances of each service (runs of a vector sorted by service name) share one
/// name: the index's when another node hosts the service already, else the run's first.
fn share_names(instances: &mut [ServiceInstance], hosts: &HashMap<Arc<str>, Vec<Arc<str>>>) {
    for run in instances.chunk_by_mut(|a, b| a.service == b.service) {
        let name = match hosts.get_key_value(&*run[0].service) {
            Some((name, _)) => Arc::clone(name),
            None => Arc::clone(&run[0].service),
        };
        for instance in run {
            instance.service = Arc::clone(&name);
        }
    }
}

/// The instances of `service` in a vector sorted by service name.
fn of_service<'a>(instances: &'a [ServiceInstance], service: &str) -> &'a [ServiceInstance] {
    let start = instances.partition_point(|i| &*i.service < service);
    let end = start + instances[start..].partition_point(|i| &*i.service == service);
    &instances[start..end]
}

/// The service names of a vector sorted by service name, once each.
fn service_names(instances: &[ServiceInstance]) -> impl Iterator<Item = &Arc<str>> {
    instances.chunk_by(|a, b| a.service == b.service).map(|run| &run[0].service)
}

#[cfg(test)]
mod tests;
