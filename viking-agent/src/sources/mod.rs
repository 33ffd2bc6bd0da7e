//! Sources of desired state. Each source sends full snapshots of the services it knows;
//! the run loop keeps the latest snapshot per source and merges them.

pub mod backoff;
pub mod consul;
pub mod docker;
pub mod static_file;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::IpAddr,
};

use crate::model::DesiredState;

/// Which source a snapshot comes from. The order is the precedence when two sources claim
/// the same frontend: the earlier one wins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SourceId {
    /// The `--config` file.
    StaticFile,
    /// Consul's catalog and health (`[consul]`).
    Consul,
}

/// What a source tells the run loop.
#[derive(Debug)]
pub enum Update {
    /// A full snapshot of services (static file, Consul).
    Services(Snapshot),
    /// Every running container (Docker).
    Containers(Vec<docker::Container>),
    /// `connect_to=<service>` tags of Consul service instances, by instance id.
    ConsulDeclarations(BTreeMap<String, BTreeSet<String>>),
}

/// A full snapshot from one source.
#[derive(Debug)]
pub struct Snapshot {
    /// Who sent it.
    pub source: SourceId,
    /// Everything that source wants served.
    pub state: DesiredState,
}

/// The latest snapshot of every source.
#[derive(Debug, Default)]
pub struct SourceSet {
    latest: BTreeMap<SourceId, DesiredState>,
}

impl SourceSet {
    /// Records a snapshot, replacing the source's previous one.
    pub fn update(&mut self, snapshot: Snapshot) {
        self.latest.insert(snapshot.source, snapshot.state);
    }

    /// Whether every one of `expected` has reported at least once. Until then nothing the
    /// kernel holds is removed (a restarted agent must not flush before a full sync).
    pub fn has_all(&self, expected: &[SourceId]) -> bool {
        expected.iter().all(|source| self.latest.contains_key(source))
    }

    /// The union of all snapshots. A frontend, a name or a VIP claimed by two sources
    /// goes to the first source; the conflict is returned as a message.
    pub fn merged(&self) -> (DesiredState, Vec<String>) {
        let mut merged = DesiredState::default();
        let mut conflicts = Vec::new();
        let mut vip_of: HashMap<&str, IpAddr> = HashMap::new();
        let mut name_of: HashMap<IpAddr, &str> = HashMap::new();
        for (source, state) in &self.latest {
            for (frontend, service) in &state.services {
                let clash = if let Some(winner) = merged.services.get(frontend) {
                    Some(format!("its frontend is already served as {:?}", winner.name))
                } else if let Some(vip) = vip_of.get(service.name.as_str()).filter(|v| **v != frontend.vip) {
                    Some(format!("the name already has VIP {vip}"))
                } else {
                    name_of
                        .get(&frontend.vip)
                        .filter(|n| **n != service.name)
                        .map(|n| format!("the VIP already belongs to {n:?}"))
                };
                match clash {
                    Some(why) => {
                        conflicts.push(format!("{source:?} service {:?} {frontend} ignored: {why}", service.name))
                    }
                    None => {
                        vip_of.insert(&service.name, frontend.vip);
                        name_of.insert(frontend.vip, &service.name);
                        merged.services.insert(*frontend, service.clone());
                    }
                }
            }
        }
        (merged, conflicts)
    }
}
