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

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use super::wire::{HealthEntry, Node, NodeCheck, NodeServices, ServiceInstance};

/// The check status that lets an instance be used.
const PASSING: &str = "passing";
/// The `ServiceID` of a node's own checks, which hold every instance on the node.
const NODE_CHECK: &str = "";

/// Every watched node's instances and failing checks, with an index from service name to
/// the nodes that host it.
#[derive(Debug, Default)]
pub struct NodeView {
    nodes: HashMap<String, NodeState>,
    /// Service name → the nodes with an instance of it.
    hosts: HashMap<String, BTreeSet<String>>,
    /// The last watch generation handed out.
    generation: u64,
}

/// One node.
#[derive(Debug, Default)]
struct NodeState {
    /// Name and address, from the last services answer (`None` before it, or when the node
    /// no longer exists).
    node: Option<Node>,
    /// Instances by service name, then instance ID.
    services: BTreeMap<String, BTreeMap<String, ServiceInstance>>,
    /// Instance ID → service name.
    service_of: HashMap<String, String>,
    /// Instance IDs with a check that is not passing ([`NODE_CHECK`] for the node's own).
    failing: HashSet<String>,
    /// Instances no checks answer read after them has covered yet.
    unconfirmed: HashSet<String>,
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
    /// Services whose instances on this node changed.
    pub changed: BTreeSet<String>,
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
        let generation = self.next_generation();
        self.nodes.insert(node.to_owned(), NodeState { services_watch: generation, ..NodeState::default() });
        Some(generation)
    }

    /// Forgets `node`; returns the services it hosted.
    pub fn remove(&mut self, node: &str) -> BTreeSet<String> {
        let Some(state) = self.nodes.remove(node) else { return BTreeSet::new() };
        let changed: BTreeSet<String> = state.services.into_keys().collect();
        for service in &changed {
            self.unhost(service, node);
        }
        changed
    }

    /// The nodes known.
    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.nodes.keys()
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
        let (info, instances) = match answer {
            Some(answer) => (Some(answer.node), answer.services.unwrap_or_default()),
            None => (None, BTreeMap::new()),
        };
        let mut services: BTreeMap<String, BTreeMap<String, ServiceInstance>> = BTreeMap::new();
        for instance in instances.into_values() {
            services.entry(instance.service.clone()).or_default().insert(instance.id.clone(), instance);
        }
        let address_changed = state.node != info;
        let mut changed = BTreeSet::new();
        for name in state.services.keys().chain(services.keys()) {
            if address_changed || state.services.get(name) != services.get(name) {
                changed.insert(name.clone());
            }
        }
        let mut service_of = HashMap::new();
        let mut new = false;
        for (name, instances) in &services {
            for id in instances.keys() {
                if !state.service_of.contains_key(id) || !state.services_read {
                    state.unconfirmed.insert(id.clone());
                    new = true;
                }
                service_of.insert(id.clone(), name.clone());
            }
        }
        state.unconfirmed.retain(|id| service_of.contains_key(id));
        let (gone, added): (Vec<String>, Vec<String>) = {
            let gone = state.services.keys().filter(|name| !services.contains_key(*name)).cloned().collect();
            let added = services.keys().filter(|name| !state.services.contains_key(*name)).cloned().collect();
            (gone, added)
        };
        let first = !state.services_read;
        state.node = info;
        state.services = services;
        state.service_of = service_of;
        state.services_read = true;
        let restart_checks = if first || new {
            self.generation += 1;
            state.checks_watch = self.generation;
            state.checks_read = false;
            Some(self.generation)
        } else {
            None
        };
        for name in gone {
            self.unhost(&name, node);
        }
        for name in added {
            self.hosts.entry(name).or_default().insert(node.to_owned());
        }
        ServicesRead { changed, restart_checks }
    }

    /// Takes a checks answer of the current checks watch; returns the services whose
    /// passing instances on this node changed.
    pub fn set_checks(&mut self, node: &str, checks: &[NodeCheck]) -> BTreeSet<String> {
        let Some(state) = self.nodes.get_mut(node) else { return BTreeSet::new() };
        let failing: HashSet<String> =
            checks.iter().filter(|check| check.status != PASSING).map(|check| check.service_id.clone()).collect();
        let mut changed = BTreeSet::new();
        if failing.contains(NODE_CHECK) != state.failing.contains(NODE_CHECK) {
            changed.extend(state.services.keys().cloned());
        }
        let flipped = failing.symmetric_difference(&state.failing).chain(state.unconfirmed.iter());
        changed.extend(flipped.filter_map(|id| state.service_of.get(id)).cloned());
        state.failing = failing;
        state.unconfirmed.clear();
        state.checks_read = true;
        changed
    }

    /// Whether any node hosts an instance of `service`, passing or not.
    pub fn hosts(&self, service: &str) -> bool {
        self.hosts.contains_key(service)
    }

    /// Whether an instance of `service` has `tag` (Consul's catalog lists a service with
    /// the tags of all its instances).
    pub fn has_tag(&self, service: &str, tag: &str) -> bool {
        self.instances(service).any(|(_, _, instance)| instance.tags.iter().flatten().any(|t| t == tag))
    }

    /// The passing instances of `service`, confirmed by a checks answer.
    pub fn passing(&self, service: &str) -> Vec<HealthEntry> {
        self.instances(service)
            .filter(|(state, _, instance)| {
                !state.failing.contains(NODE_CHECK)
                    && !state.failing.contains(&instance.id)
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
                Some(state.services.get(service)?.values().map(move |instance| (state, node, instance)))
            })
            .flatten()
    }

    fn unhost(&mut self, service: &str, node: &str) {
        if let Some(nodes) = self.hosts.get_mut(service) {
            nodes.remove(node);
            if nodes.is_empty() {
                self.hosts.remove(service);
            }
        }
    }

    fn next_generation(&mut self) -> u64 {
        self.generation += 1;
        self.generation
    }
}

#[cfg(test)]
mod tests;
