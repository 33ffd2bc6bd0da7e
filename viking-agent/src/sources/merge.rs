//! The union of every source's services, kept change by change.
//!
//! A frontend, a name or a VIP claimed by two sources goes to the first source in
//! [`SourceId`] order (static file before Consul); the loser is reported as a
//! [`Conflict`]. Whether a service wins depends only on the services it shares a frontend,
//! a name or a VIP with, so a change is merged by deciding again, in source order, only the
//! group of services connected to it by names and VIPs — usually the one service. One
//! change in a source of 100,000 services costs work for that service, not a full merge.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    net::IpAddr,
    sync::Arc,
};

use super::SourceId;
use crate::model::{Clash, DesiredState, Frontend, NameVipClaims, Service, ServiceChange, ServiceName, SmallSet};

/// Why a source's service is not served.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConflictReason {
    /// An earlier source serves another service at the same frontend.
    #[error("its frontend is already served as {0:?}")]
    FrontendTaken(String),
    /// An earlier source gives the name another VIP, or the VIP to another name.
    #[error(transparent)]
    Claimed(#[from] Clash),
}

/// A service of one source that another source's claim keeps out of the kernel.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{origin:?} service {name:?} {frontend} ignored: {reason}")]
pub struct Conflict {
    /// The losing source.
    pub origin: SourceId,
    /// The losing service's name.
    pub name: String,
    /// Its frontend.
    pub frontend: Frontend,
    /// What it clashes with.
    pub reason: ConflictReason,
}

/// What one update of a source changed in the merged view.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Merged {
    /// Changes of the merged view, one per frontend.
    pub changes: Vec<ServiceChange>,
    /// Conflicts among the services the update touched (also those that persist).
    pub conflicts: Vec<Conflict>,
}

/// Every source's services and their merge.
#[derive(Debug, Default)]
pub struct SourceSet {
    /// Each source's own services; a source is here once it has reported.
    sources: BTreeMap<SourceId, BTreeMap<Frontend, Arc<Service>>>,
    /// Name -> the (source, frontend) of every service with that name.
    by_name: HashMap<ServiceName, SmallSet<(SourceId, Frontend)>>,
    /// VIP -> the (source, frontend) of every service on that VIP.
    by_vip: HashMap<IpAddr, SmallSet<(SourceId, Frontend)>>,
    /// The merged view: the winning source and service per frontend.
    merged: BTreeMap<Frontend, (SourceId, Arc<Service>)>,
}

impl SourceSet {
    /// Replaces everything `source` serves with `state` (a full report).
    pub fn replace(&mut self, source: SourceId, state: DesiredState) -> Merged {
        let old = self.sources.get(&source);
        let mut changes: Vec<ServiceChange> = old
            .into_iter()
            .flat_map(|old| old.keys().filter(|f| !state.services.contains_key(f)))
            .map(|frontend| ServiceChange::Remove(*frontend))
            .collect();
        changes.extend(state.services.into_values().map(ServiceChange::Upsert));
        self.apply(source, changes)
    }

    /// Applies changes that `source` reports; the source counts as reported from now on.
    pub fn apply(&mut self, source: SourceId, changes: Vec<ServiceChange>) -> Merged {
        self.sources.entry(source).or_default();
        let mut seeds = Component::default();
        for change in changes {
            let frontend = change.frontend();
            let own = self.sources.entry(source).or_default();
            let old = match change {
                ServiceChange::Upsert(service) => {
                    if own.get(&frontend) == Some(&service) {
                        continue;
                    }
                    seeds.names.insert(service.name.clone());
                    own.insert(frontend, service)
                }
                ServiceChange::Remove(_) => match own.remove(&frontend) {
                    Some(old) => Some(old),
                    None => continue,
                },
            };
            if let Some(old) = old {
                self.unindex(source, &old);
                seeds.names.insert(old.name.clone());
            }
            if let Some(service) = self.sources[&source].get(&frontend) {
                let service = service.clone();
                self.index(source, &service);
            }
            seeds.vips.insert(frontend.vip);
        }
        self.remerge(seeds)
    }

    /// Whether every one of `expected` has reported at least once. Until then nothing the
    /// kernel holds is removed (a restarted agent must not flush before a full sync).
    pub fn has_all(&self, expected: &[SourceId]) -> bool {
        expected.iter().all(|source| self.sources.contains_key(source))
    }

    /// The whole merged view.
    pub fn merged(&self) -> DesiredState {
        DesiredState { services: self.merged.iter().map(|(f, (_, s))| (*f, s.clone())).collect() }
    }

    fn index(&mut self, source: SourceId, service: &Service) {
        let key = (source, service.frontend);
        self.by_name.entry(service.name.clone()).or_default().insert(key);
        self.by_vip.entry(service.frontend.vip).or_default().insert(key);
    }

    fn unindex(&mut self, source: SourceId, service: &Service) {
        let key = (source, service.frontend);
        if let Some(set) = self.by_name.get_mut(&service.name) {
            set.remove(&key);
            if set.is_empty() {
                self.by_name.remove(&service.name);
            }
        }
        if let Some(set) = self.by_vip.get_mut(&service.frontend.vip) {
            set.remove(&key);
            if set.is_empty() {
                self.by_vip.remove(&service.frontend.vip);
            }
        }
    }

    /// Decides again every frontend connected to `seeds` by names and VIPs.
    fn remerge(&mut self, seeds: Component) -> Merged {
        let component = self.close(seeds);
        // The candidates in the order a full merge visits them: source, then frontend.
        let mut candidates: Vec<(SourceId, Frontend)> =
            component.vips.iter().flat_map(|vip| self.by_vip.get(vip).into_iter().flatten().copied()).collect();
        candidates.sort_unstable();
        let mut winners: BTreeMap<Frontend, (SourceId, Arc<Service>)> = BTreeMap::new();
        let mut claims: NameVipClaims<&str> = NameVipClaims::default();
        let mut conflicts = Vec::new();
        for (source, frontend) in candidates {
            let service = &self.sources[&source][&frontend];
            let decided = match winners.get(&frontend) {
                Some((_, winner)) => Err(ConflictReason::FrontendTaken(winner.name.to_string())),
                None => claims.check(&service.name, frontend.vip).map_err(ConflictReason::from),
            };
            match decided {
                Err(reason) => {
                    conflicts.push(Conflict { origin: source, name: service.name.to_string(), frontend, reason });
                }
                Ok(()) => {
                    claims.claim(&*service.name, frontend.vip);
                    winners.insert(frontend, (source, service.clone()));
                }
            }
        }
        let mut frontends: BTreeSet<Frontend> = winners.keys().copied().collect();
        for vip in &component.vips {
            frontends.extend(self.merged_on(*vip));
        }
        let mut changes = Vec::new();
        for frontend in frontends {
            let new = winners.remove(&frontend);
            let unchanged = match (self.merged.get(&frontend), &new) {
                (Some((old_source, old)), Some((source, service))) => old_source == source && old == service,
                (None, None) => true,
                _ => false,
            };
            if unchanged {
                continue;
            }
            match new {
                Some((source, service)) => {
                    changes.push(ServiceChange::Upsert(service.clone()));
                    self.merged.insert(frontend, (source, service));
                }
                None => {
                    changes.push(ServiceChange::Remove(frontend));
                    self.merged.remove(&frontend);
                }
            }
        }
        Merged { changes, conflicts }
    }

    /// The frontends of the merged view on `vip`.
    fn merged_on(&self, vip: IpAddr) -> Vec<Frontend> {
        let low = Frontend { vip, port: 0, protocol: crate::model::Protocol::Tcp };
        let high = Frontend { vip, port: u16::MAX, protocol: crate::model::Protocol::Udp };
        self.merged.range(low..=high).map(|(f, _)| *f).collect()
    }

    /// Grows `seeds` to every name and VIP reachable through services of any source (and
    /// through the merged view, whose winners may have just left their source).
    fn close(&self, seeds: Component) -> Component {
        let mut component = Component::default();
        let mut names: Vec<ServiceName> = seeds.names.into_iter().collect();
        let mut vips: Vec<IpAddr> = seeds.vips.into_iter().collect();
        loop {
            if let Some(name) = names.pop() {
                if !component.names.insert(name.clone()) {
                    continue;
                }
                for (_, frontend) in self.by_name.get(&name).into_iter().flatten() {
                    vips.push(frontend.vip);
                }
            } else if let Some(vip) = vips.pop() {
                if !component.vips.insert(vip) {
                    continue;
                }
                for (source, frontend) in self.by_vip.get(&vip).into_iter().flatten() {
                    names.push(self.sources[source][frontend].name.clone());
                }
                for frontend in self.merged_on(vip) {
                    names.push(self.merged[&frontend].1.name.clone());
                }
            } else {
                return component;
            }
        }
    }
}

/// Names and VIPs of a group of services that decide each other's fate.
#[derive(Debug, Default)]
struct Component {
    names: HashSet<ServiceName>,
    vips: HashSet<IpAddr>,
}

#[cfg(test)]
mod tests {
    use viking_common::Algorithm;

    use super::*;
    use crate::model::Protocol;

    fn service(name: &str, vip: &str, port: u16, backend: u8) -> Arc<Service> {
        Arc::new(Service {
            name: name.into(),
            frontend: Frontend { vip: vip.parse().unwrap(), port, protocol: Protocol::Tcp },
            algorithm: Algorithm::RoundRobin,
            affinity_secs: 0,
            outlier: crate::model::OutlierDetection::default(),
            backends: vec![crate::model::BackendSpec::new(format!("10.0.0.{backend}:80").parse().unwrap())],
        })
    }

    /// The merge as a whole: every source in order, every service in frontend order.
    fn full_merge(sources: &BTreeMap<SourceId, BTreeMap<Frontend, Arc<Service>>>) -> BTreeMap<Frontend, Arc<Service>> {
        let mut merged = BTreeMap::new();
        let mut vip_of: HashMap<ServiceName, IpAddr> = HashMap::new();
        let mut name_of: HashMap<IpAddr, ServiceName> = HashMap::new();
        for services in sources.values() {
            for (frontend, service) in services {
                let clash = merged.contains_key(frontend)
                    || vip_of.get(&service.name).is_some_and(|v| *v != frontend.vip)
                    || name_of.get(&frontend.vip).is_some_and(|n| *n != service.name);
                if !clash {
                    vip_of.insert(service.name.clone(), frontend.vip);
                    name_of.insert(frontend.vip, service.name.clone());
                    merged.insert(*frontend, service.clone());
                }
            }
        }
        merged
    }

    #[test]
    fn the_first_source_wins_frontends_names_and_vips() {
        let mut set = SourceSet::default();
        set.replace(SourceId::StaticFile, DesiredState::default());
        let consul = set.apply(
            SourceId::Consul,
            vec![
                ServiceChange::Upsert(service("web", "240.0.0.10", 80, 1)),
                ServiceChange::Upsert(service("api", "240.0.0.20", 80, 2)),
            ],
        );
        assert_eq!(consul.changes.len(), 2);
        let file = set.apply(SourceId::StaticFile, vec![ServiceChange::Upsert(service("web", "240.0.0.30", 80, 3))]);
        let reasons: Vec<&ConflictReason> = file.conflicts.iter().map(|c| &c.reason).collect();
        assert_eq!(reasons, [&ConflictReason::Claimed(Clash::NameHasVip("240.0.0.30".parse().unwrap()))]);
        assert_eq!(file.conflicts[0].origin, SourceId::Consul, "the later source loses");
        assert_eq!(
            file.changes,
            [
                ServiceChange::Remove(service("web", "240.0.0.10", 80, 1).frontend),
                ServiceChange::Upsert(service("web", "240.0.0.30", 80, 3))
            ]
        );
        // The file drops its claim: Consul's web comes back.
        let file = set.replace(SourceId::StaticFile, DesiredState::default());
        assert_eq!(file.conflicts, []);
        assert_eq!(file.changes.len(), 2);
        assert_eq!(set.merged().services.len(), 2);
    }

    #[test]
    fn an_unchanged_service_changes_nothing() {
        let mut set = SourceSet::default();
        let web = service("web", "240.0.0.10", 80, 1);
        set.apply(SourceId::Consul, vec![ServiceChange::Upsert(web.clone())]);
        assert_eq!(set.apply(SourceId::Consul, vec![ServiceChange::Upsert(web)]), Merged::default());
        let gone = set.apply(SourceId::Consul, vec![ServiceChange::Remove(service("x", "240.0.0.1", 1, 1).frontend)]);
        assert_eq!(gone, Merged::default(), "removing what is not there");
    }

    #[test]
    fn sources_count_as_reported_from_their_first_update() {
        let mut set = SourceSet::default();
        set.replace(SourceId::StaticFile, DesiredState::default());
        assert!(!set.has_all(&[SourceId::StaticFile, SourceId::Consul]));
        set.apply(SourceId::Consul, Vec::new());
        assert!(set.has_all(&[SourceId::StaticFile, SourceId::Consul]));
    }

    /// Thousands of random changes to two sources over a few names, VIPs and ports (so
    /// that conflicts are frequent): after every one, the incremental view equals a full
    /// merge, and the changes it reported turn the previous view into the new one.
    #[test]
    fn incremental_merging_equals_a_full_merge() {
        let mut rng = fastrand::Rng::with_seed(7);
        let mut set = SourceSet::default();
        let mut view: BTreeMap<Frontend, Arc<Service>> = BTreeMap::new();
        let names = ["a", "b", "c", "d"];
        let vips = ["240.0.0.1", "240.0.0.2", "240.0.0.3"];
        for step in 0..5_000 {
            let source = if rng.bool() { SourceId::StaticFile } else { SourceId::Consul };
            let changes: Vec<ServiceChange> = (0..rng.usize(1..4))
                .map(|_| {
                    let candidate = service(
                        names[rng.usize(..names.len())],
                        vips[rng.usize(..vips.len())],
                        rng.u16(1..3),
                        rng.u8(1..3),
                    );
                    if rng.u8(..3) == 0 {
                        ServiceChange::Remove(candidate.frontend)
                    } else {
                        ServiceChange::Upsert(candidate)
                    }
                })
                .collect();
            let merged = set.apply(source, changes);
            for change in merged.changes {
                match change {
                    ServiceChange::Upsert(service) => view.insert(service.frontend, service),
                    ServiceChange::Remove(frontend) => view.remove(&frontend),
                };
            }
            assert_eq!(view, full_merge(&set.sources), "step {step}");
            assert_eq!(set.merged().services, view, "step {step}");
        }
    }
}
