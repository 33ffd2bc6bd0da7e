//! What the run loop is told: nothing before the initial sync, then every service once,
//! then only the services an answer marked, each built from its VIP, its shape and its
//! passing instances.

use std::{
    collections::{BTreeMap, BTreeSet, HashSet},
    sync::Arc,
};

use super::{ConsulState, instances};
use crate::{
    model::{DesiredState, Service, ServiceChange, ServiceName},
    sources::SourceChange,
};

/// What the run loop is told after a round of answers.
#[derive(Debug, Default)]
pub struct Output {
    /// The services, in full the first time, then as changes.
    pub services: Option<SourceChange>,
    /// `connect_to` declarations of the services whose declarations changed.
    pub declarations: Vec<(String, BTreeMap<String, BTreeSet<String>>)>,
}

impl ConsulState {
    /// What changed since the last call: nothing before the initial sync, then everything
    /// once, then the marked services.
    pub fn take_output(&mut self) -> Output {
        if !self.synced {
            if !self.nodes_listed || !self.vips_loaded || !self.awaiting.is_empty() {
                return Output::default();
            }
            self.synced = true;
            tracing::info!(services = self.wanted.len(), "consul: initial sync done");
            self.dirty = HashSet::new();
            return self.full_output();
        }
        let mut changes = Vec::new();
        let mut declarations = Vec::new();
        // Taken, not drained: the initial sync marks every service, and a drained set keeps
        // that room.
        let mut dirty: Vec<ServiceName> = std::mem::take(&mut self.dirty).into_iter().collect();
        dirty.sort_unstable();
        for name in dirty {
            let built = self.build(&name).map(Arc::new);
            let old = self.sent.get(&name);
            match (old, built) {
                (Some(old), Some(new)) if **old == *new => {}
                (old, Some(new)) => {
                    if let Some(old) = old.filter(|o| o.frontend != new.frontend) {
                        changes.push(ServiceChange::Remove(old.frontend));
                    }
                    changes.push(ServiceChange::Upsert(new.clone()));
                    self.replace_sent(&name, Some(new));
                }
                (Some(old), None) => {
                    changes.push(ServiceChange::Remove(old.frontend));
                    self.replace_sent(&name, None);
                }
                (None, None) => {}
            }
            if let Some(changed) = self.declarations_changed(&name) {
                declarations.push((name.to_string(), changed));
            }
        }
        let services = (!changes.is_empty()).then_some(SourceChange::Delta(changes));
        Output { services, declarations }
    }

    /// Every service and declaration, for the first report.
    fn full_output(&mut self) -> Output {
        let names: Vec<ServiceName> = self.wanted.iter().cloned().collect();
        let mut state = DesiredState::default();
        let mut declarations = Vec::new();
        for name in names {
            if let Some(service) = self.build(&name).map(Arc::new) {
                state.services.insert(service.frontend, service.clone());
                self.replace_sent(&name, Some(service));
            }
            if let Some(changed) = self.declarations_changed(&name) {
                declarations.push((name.to_string(), changed));
            }
        }
        // Most services' backends now live in the services sent alone.
        self.backends.shrink_to_fit();
        Output { services: Some(SourceChange::Replace(state)), declarations }
    }

    /// Records what the run loop was told of `name`. The reading of a wanted service's
    /// backends is `backends[name]`, or else the backends of the service sent: it is kept
    /// in `backends` before the service sent changes, and dropped from there when the new
    /// one holds the very same (no instance of the other address family than its VIP was
    /// left out), so that usually the service sent is the one copy.
    fn replace_sent(&mut self, name: &ServiceName, service: Option<Arc<Service>>) {
        if self.wanted.contains(name)
            && !self.backends.contains_key(name)
            && let Some(old) = self.sent.get(name)
        {
            self.backends.insert(name.clone(), old.backends.clone().into_boxed_slice());
        }
        match service {
            Some(service) => {
                if self.backends.get(name).is_some_and(|read| read[..] == service.backends[..]) {
                    self.backends.remove(name);
                }
                self.sent.insert(name.clone(), service);
            }
            None => {
                self.sent.remove(name);
            }
        }
    }

    /// The service `name` as it should be served, if it can be.
    fn build(&mut self, name: &ServiceName) -> Option<Service> {
        if !self.wanted.contains(name) {
            return None;
        }
        let (allocation, shape) = (self.vips.get(name)?, self.shapes.get(name)?);
        let backends = match (self.backends.get(name), self.sent.get(name)) {
            (Some(read), _) => &read[..],
            (None, Some(sent)) => &sent.backends[..],
            (None, None) => &[],
        };
        let (service, problem) = instances::service(name.clone(), allocation.vip, shape, backends);
        self.log_problems(&format!("{name} (address family)"), problem.into_iter().collect());
        Some(service)
    }

    /// The declarations of `name`'s instances, when they differ from those last sent.
    fn declarations_changed(&mut self, name: &ServiceName) -> Option<BTreeMap<String, BTreeSet<String>>> {
        let now = self.declarations.get(name);
        if now == self.declarations_sent.get(name) {
            return None;
        }
        match now {
            Some(now) => {
                self.declarations_sent.insert(name.clone(), now.clone());
                Some(now.clone())
            }
            None => self.declarations_sent.remove(name).map(|_| BTreeMap::new()),
        }
    }
}
