//! The reconciler: the single owner of the kernel's service maps. It is given changes (or
//! a whole desired state) and writes the difference to the kernel, in an order that keeps
//! every intermediate state valid for a concurrent `connect()`:
//!
//! 1. new backend addresses are written before any slot names them;
//! 2. backend slots `1..=n` are written before slot 0 publishes count `n`;
//! 3. slot 0 lowers the count before surplus slots are deleted;
//! 4. a backend address is cleared only when no slot names it any more.
//!
//! Only changed entries are written; an unchanged service costs one comparison and no
//! syscall, and a change costs work for its own service only.
//!
//! This file applies changes; `adopt` starts a reconciler from the pinned maps, `view`
//! answers what is installed, `write` writes one service in that order.

mod adopt;
mod backends;
mod ids;
mod kernel;
mod report;
mod slots;
mod view;
mod write;

use std::collections::{BTreeMap, HashSet};

use ids::IdPool;
pub use kernel::KernelWriter;
pub use report::{ApplyError, ApplyFailure, ApplyReport, CleanupStep, LimitHit};
pub use view::ServiceView;
use viking_common::{Algorithm, Ip6, OutlierPolicy, ServiceKey};

use self::{backends::BackendIds, write::cleanup};
use crate::{
    dataplane::tables::TableError,
    model::{DesiredState, Frontend, Limits, ServedServices, Service, ServiceChange, ServiceName},
};

/// A service as installed in the kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Installed {
    service_id: u32,
    algorithm: Algorithm,
    affinity_secs: u32,
    /// The kernel's outlier policy of the service.
    outlier: OutlierPolicy,
    name: ServiceName,
    /// Backend id per slot `1..=n`; `None` marks a slot found missing at adoption.
    slots: Vec<Option<u32>>,
}

/// Owns the kernel maps and makes them match the desired state.
#[derive(Debug)]
pub struct Reconciler<K> {
    kernel: K,
    limits: Limits,
    installed: BTreeMap<Frontend, Installed>,
    service_ids: IdPool,
    backends: BackendIds,
    /// `SERVICES` entries in use (service entries + slots).
    slots_used: u64,
    /// Backend ids found in the kernel without any slot naming them.
    orphan_backends: Vec<u32>,
    /// What the kernel serves: the service last written successfully per frontend (or, for
    /// an adopted one, as read back). An identical service in a change (usually the very
    /// same `Arc`) costs one comparison.
    served: ServedServices,
}

impl<K: KernelWriter> Reconciler<K> {
    /// Makes the kernel hold exactly `desired`: every installed service not in it is
    /// removed. Costs work for every service; [`Reconciler::apply_changes`] is the
    /// incremental form.
    pub fn apply(&mut self, desired: &DesiredState) -> ApplyReport {
        let mut changes: Vec<ServiceChange> = self
            .installed
            .keys()
            .filter(|f| !desired.services.contains_key(f))
            .map(|f| ServiceChange::Remove(*f))
            .collect();
        changes.extend(desired.services.values().cloned().map(ServiceChange::Upsert));
        self.apply_changes(changes)
    }

    /// Applies changes: removals first (they make room), then additions and updates. A
    /// service that cannot be written (a limit is reached, a map write fails) is reported
    /// and left as it was; the others are applied.
    pub fn apply_changes(&mut self, changes: Vec<ServiceChange>) -> ApplyReport {
        let mut report = ApplyReport::default();
        let (removals, upserts): (Vec<ServiceChange>, Vec<ServiceChange>) =
            changes.into_iter().partition(|c| matches!(c, ServiceChange::Remove(_)));
        for frontend in removals.iter().map(ServiceChange::frontend) {
            match self.remove(&frontend, &mut report) {
                Ok(Some(name)) => report.removed.push((name, frontend)),
                Ok(None) => {}
                Err(error) => report.failed.push(ApplyFailure::Removal { frontend, error }),
            }
        }
        for change in upserts {
            let ServiceChange::Upsert(service) = change else { continue };
            if self.served.get(&service.frontend) == Some(&service) {
                continue;
            }
            let existed = self.installed.contains_key(&service.frontend);
            match self.upsert(&service, &mut report) {
                Ok(changed) => {
                    self.served.insert(service.clone());
                    if changed {
                        if existed { report.changed.push(service) } else { report.added.push(service) }
                    }
                }
                Err(error) => report.failed.push(ApplyFailure::Service {
                    name: service.name.to_string(),
                    frontend: service.frontend,
                    error,
                }),
            }
        }
        for id in std::mem::take(&mut self.orphan_backends) {
            if !self.backends.is_referenced(id)
                && let Err(error) = self.backends.free(&mut self.kernel, id, &mut report)
            {
                report.failed.push(ApplyFailure::Backend { id, error });
            }
        }
        // A backend freed by a removal and taken again by an upsert in the same apply (a
        // frontend that changed port or VIP) did not leave.
        let backends = &self.backends;
        report.released_backends.retain(|addr| !backends.is_used(addr));
        report.released_backends.sort();
        report.released_backends.dedup();
        report
    }

    /// Writes one service; returns whether anything changed.
    fn upsert(&mut self, service: &Service, report: &mut ApplyReport) -> Result<bool, ApplyError> {
        let layout = slots::layout(service, self.limits.max_backends_per_service);
        let old = self.installed.get(&service.frontend).cloned();
        // (`old` is cloned because the writes below borrow `self` mutably; this only runs for
        // services that differ from what was last applied.)
        if let Some(old) = &old {
            let unchanged = old.algorithm == service.algorithm
                && old.affinity_secs == service.affinity_secs
                && old.outlier == service.outlier.policy()
                && old.name == service.name
                && old.slots.len() == layout.len()
                && old
                    .slots
                    .iter()
                    .zip(&layout)
                    .all(|(slot, addr)| slot.and_then(|id| self.backends.addr_of(id)) == Some(*addr));
            if unchanged {
                return Ok(false);
            }
        }
        let old_len = old.as_ref().map_or(0, |o| o.slots.len());
        let growth = layout.len().saturating_sub(old_len) as u64 + u64::from(old.is_none());
        if self.slots_used + growth > u64::from(self.limits.max_service_slots) {
            return Err(LimitHit::ServiceSlots { limit: self.limits.max_service_slots, in_use: self.slots_used }.into());
        }
        let service_id = match &old {
            Some(old) => old.service_id,
            None => self.service_ids.allocate().ok_or(LimitHit::Services(self.limits.max_services))?,
        };
        let new_ids = match self.backends.acquire(&mut self.kernel, &layout, report) {
            Ok(ids) => ids,
            Err(err) => {
                if old.is_none() {
                    self.service_ids.release(service_id);
                }
                return Err(err);
            }
        };
        if let Err(err) = write::write_service(&mut self.kernel, service, service_id, old.as_ref(), &new_ids, report) {
            // write_service rolled the kernel back to the old version (or removed the new
            // service): no slot names the new references any more.
            self.backends.release_all(&mut self.kernel, &new_ids, report);
            if old.is_none() {
                self.service_ids.release(service_id);
            }
            return Err(err);
        }
        // Bookkeeping after the writes cannot fail: a map error below is reported, and the
        // kernel already holds the new version.
        if let Some(old) = &old {
            if old.affinity_secs > 0 {
                // Clients pinned to a backend that left (or all of them, when affinity is
                // turned off: stale entries could name a reused backend id later).
                let keep: HashSet<u32> =
                    if service.affinity_secs > 0 { new_ids.iter().copied().collect() } else { HashSet::new() };
                if let Err(error) = self.kernel.forget_affinity(service_id, &keep) {
                    report.failed.push(cleanup(service, CleanupStep::ForgetAffinity, error));
                }
            }
            let old_ids: Vec<u32> = old.slots.iter().flatten().copied().collect();
            self.backends.release_all(&mut self.kernel, &old_ids, report);
        }
        self.slots_used += growth;
        self.slots_used -= old_len.saturating_sub(layout.len()) as u64;
        let installed = Installed {
            service_id,
            algorithm: service.algorithm,
            affinity_secs: service.affinity_secs,
            outlier: service.outlier.policy(),
            name: service.name.clone(),
            slots: new_ids.into_iter().map(Some).collect(),
        };
        self.installed.insert(service.frontend, installed);
        Ok(true)
    }

    /// Removes a service: slot 0 first (it disappears for new connects at once), then its
    /// slots, then backends nobody names any more. Returns its name (`None`: not installed).
    fn remove(&mut self, frontend: &Frontend, report: &mut ApplyReport) -> Result<Option<String>, TableError> {
        let Some(old) = self.installed.get(frontend).cloned() else {
            return Ok(None);
        };
        let key = service_key(frontend, 0);
        self.kernel.delete_slot(&key)?;
        for slot in 1..=old.slots.len() {
            self.kernel.delete_slot(&key.with_slot(slot as u16))?;
        }
        self.kernel.delete_name(old.service_id)?;
        if old.affinity_secs > 0 {
            self.kernel.forget_affinity(old.service_id, &HashSet::new())?;
        }
        report.writes += 2 + old.slots.len();
        self.installed.remove(frontend);
        self.served.remove(frontend);
        self.service_ids.release(old.service_id);
        self.slots_used -= 1 + old.slots.len() as u64;
        for id in old.slots.iter().flatten() {
            self.backends.release(&mut self.kernel, *id, report)?;
        }
        Ok(Some(old.name.to_string()))
    }
}

/// The `SERVICES` key of a frontend's slot.
fn service_key(frontend: &Frontend, slot: u16) -> ServiceKey {
    ServiceKey::new(Ip6::from_ip(frontend.vip), frontend.port.to_be(), frontend.protocol.number(), slot)
}

/// One line describing a written service, for the log.
pub fn describe(service: &Service) -> String {
    let mut text = format!(
        "{} {} -> {} backend(s), {}",
        service.name,
        service.frontend,
        service.backends.len(),
        service.algorithm.name()
    );
    if service.affinity_secs > 0 {
        text.push_str(&format!(", affinity {} s", service.affinity_secs));
    }
    text
}

#[cfg(test)]
mod tests;
