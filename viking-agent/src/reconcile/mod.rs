//! The reconciler: the single owner of the kernel maps. It is given a desired state and
//! writes the difference to the kernel, in an order that keeps every intermediate state
//! valid for a concurrent `connect()`:
//!
//! 1. new backend addresses are written before any slot names them;
//! 2. backend slots `1..=n` are written before slot 0 publishes count `n`;
//! 3. slot 0 lowers the count before surplus slots are deleted;
//! 4. a backend address is cleared only when no slot names it any more.
//!
//! Only changed entries are written; an unchanged service costs no syscall.

mod ids;
mod slots;

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    net::SocketAddr,
    sync::Arc,
};

use ids::IdPool;
use viking_common::{Algorithm, INLINE_SLOTS, Ip6, ServiceKey, ServiceValue};

use crate::{
    config::Limits,
    dataplane::tables::{KernelSnapshot, KernelTables, TableError},
    model::{DesiredState, Frontend, Protocol, Service},
};

/// The writes the reconciler makes; implemented by the real maps and, in unit tests, by a
/// model that checks the ordering rules after every write.
pub trait KernelWriter {
    /// Writes a `SERVICES` entry.
    fn set_slot(&mut self, key: ServiceKey, value: ServiceValue) -> Result<(), TableError>;
    /// Deletes a `SERVICES` entry (missing is fine).
    fn delete_slot(&mut self, key: &ServiceKey) -> Result<(), TableError>;
    /// Writes the address of a newly assigned backend id (and zeroes its counters).
    fn set_backend(&mut self, id: u32, addr: SocketAddr) -> Result<(), TableError>;
    /// Clears a backend id.
    fn clear_backend(&mut self, id: u32) -> Result<(), TableError>;
    /// Prepares a fresh service id (zeroed counters, name).
    fn begin_service(&mut self, service_id: u32, name: &str) -> Result<(), TableError>;
    /// Renames a service id.
    fn set_name(&mut self, service_id: u32, name: &str) -> Result<(), TableError>;
    /// Forgets a released service id's name.
    fn delete_name(&mut self, service_id: u32) -> Result<(), TableError>;
    /// Drops client affinity entries of `service_id` whose backend is not in `keep`.
    fn forget_affinity(&mut self, service_id: u32, keep: &HashSet<u32>) -> Result<(), TableError>;
}

impl KernelWriter for KernelTables {
    fn set_slot(&mut self, key: ServiceKey, value: ServiceValue) -> Result<(), TableError> {
        KernelTables::set_slot(self, key, value)
    }
    fn delete_slot(&mut self, key: &ServiceKey) -> Result<(), TableError> {
        KernelTables::delete_slot(self, key)
    }
    fn set_backend(&mut self, id: u32, addr: SocketAddr) -> Result<(), TableError> {
        KernelTables::set_backend(self, id, addr)
    }
    fn clear_backend(&mut self, id: u32) -> Result<(), TableError> {
        KernelTables::clear_backend(self, id)
    }
    fn begin_service(&mut self, service_id: u32, name: &str) -> Result<(), TableError> {
        KernelTables::begin_service(self, service_id, name)
    }
    fn set_name(&mut self, service_id: u32, name: &str) -> Result<(), TableError> {
        KernelTables::set_name(self, service_id, name)
    }
    fn delete_name(&mut self, service_id: u32) -> Result<(), TableError> {
        KernelTables::delete_name(self, service_id)
    }
    fn forget_affinity(&mut self, service_id: u32, keep: &HashSet<u32>) -> Result<(), TableError> {
        KernelTables::forget_affinity(self, service_id, keep)
    }
}

/// A service as installed in the kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Installed {
    service_id: u32,
    algorithm: Algorithm,
    affinity_secs: u32,
    name: String,
    /// Backend id per slot `1..=n`; `None` marks a slot found missing at adoption.
    slots: Vec<Option<u32>>,
}

/// Backend ids with reference counts (one per slot naming them).
#[derive(Debug)]
struct BackendIds {
    pool: IdPool,
    by_addr: HashMap<SocketAddr, u32>,
    addr_of: HashMap<u32, SocketAddr>,
    refs: HashMap<u32, usize>,
}

/// What one [`Reconciler::apply`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// Services written for the first time.
    pub added: Vec<String>,
    /// Services whose backends, algorithm or name changed.
    pub changed: Vec<String>,
    /// Services removed.
    pub removed: Vec<String>,
    /// Services that could not be written, with the reason (naming the limit hit).
    pub failed: Vec<String>,
    /// Backend addresses that left every service (their ids were cleared).
    pub released_backends: Vec<SocketAddr>,
    /// Number of map writes and deletes.
    pub writes: usize,
}

impl ApplyReport {
    /// Whether nothing was changed and nothing failed.
    pub fn is_noop(&self) -> bool {
        self.added.is_empty() && self.changed.is_empty() && self.removed.is_empty() && self.failed.is_empty()
    }
}

/// Why one service could not be applied.
#[derive(Debug, thiserror::Error)]
enum ApplyError {
    #[error("limit reached: {0}")]
    Limit(String),
    #[error(transparent)]
    Table(#[from] TableError),
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
    /// The services last written successfully: an identical (usually the very same `Arc`)
    /// service in the next desired state costs one comparison.
    applied: HashMap<Frontend, Arc<Service>>,
}

impl<K: KernelWriter> Reconciler<K> {
    /// Starts from what the kernel already holds (pinned by an earlier agent), so the first
    /// apply only writes differences and nothing is flushed.
    pub fn adopt(mut kernel: K, snapshot: KernelSnapshot, limits: Limits) -> Result<Self, TableError> {
        let mut service_ids = IdPool::new(limits.max_services);
        let mut backends = BackendIds {
            pool: IdPool::new(limits.max_backends),
            by_addr: HashMap::new(),
            addr_of: HashMap::new(),
            refs: HashMap::new(),
        };
        for (id, addr) in &snapshot.backends {
            backends.pool.claim(*id);
            backends.by_addr.insert(*addr, *id);
            backends.addr_of.insert(*id, *addr);
        }
        let mut installed = BTreeMap::new();
        let mut slots_used = 0u64;
        for (key, service) in snapshot.services {
            let Some(frontend) = frontend_of(&key) else {
                continue;
            };
            service_ids.claim(service.entry.service_id);
            let slots: Vec<Option<u32>> =
                service.slots.iter().map(|slot| slot.filter(|id| backends.addr_of.contains_key(id))).collect();
            for id in slots.iter().flatten() {
                *backends.refs.entry(*id).or_default() += 1;
            }
            repair_first_backends(&mut kernel, key, service.entry, &slots)?;
            slots_used += 1 + slots.len() as u64;
            installed.insert(
                frontend,
                Installed {
                    service_id: service.entry.service_id,
                    algorithm: Algorithm::from_u8(service.entry.algorithm),
                    affinity_secs: service.entry.affinity_secs,
                    name: service.name,
                    slots,
                },
            );
        }
        for key in &snapshot.orphan_slots {
            kernel.delete_slot(key)?;
        }
        let orphan_backends = backends.addr_of.keys().copied().filter(|id| !backends.refs.contains_key(id)).collect();
        Ok(Self {
            kernel,
            limits,
            installed,
            service_ids,
            backends,
            slots_used,
            orphan_backends,
            applied: HashMap::new(),
        })
    }

    /// The maps, for reading counters.
    pub fn kernel(&self) -> &K {
        &self.kernel
    }

    /// Number of services installed.
    pub fn service_count(&self) -> usize {
        self.installed.len()
    }

    /// Whether the kernel holds a service at `frontend`.
    pub fn is_installed(&self, frontend: &Frontend) -> bool {
        self.installed.contains_key(frontend)
    }

    /// What the kernel serves, as a desired state (after adoption: the previous agent's).
    pub fn installed_state(&self) -> DesiredState {
        let services = self
            .installed
            .iter()
            .map(|(frontend, installed)| {
                let slot_addrs: Vec<SocketAddr> =
                    installed.slots.iter().filter_map(|slot| self.backends.addr_of.get(&(*slot)?).copied()).collect();
                let service = Service {
                    name: installed.name.clone(),
                    frontend: *frontend,
                    algorithm: installed.algorithm,
                    affinity_secs: installed.affinity_secs,
                    backends: slots::backends_of(&slot_addrs),
                };
                (*frontend, Arc::new(service))
            })
            .collect();
        DesiredState { services }
    }

    /// Makes the kernel hold exactly `desired`. A service that cannot be written (a limit is
    /// reached) is reported and left as it was; the others are applied.
    pub fn apply(&mut self, desired: &DesiredState) -> ApplyReport {
        let mut report = ApplyReport::default();
        let gone: Vec<Frontend> =
            self.installed.keys().filter(|f| !desired.services.contains_key(f)).copied().collect();
        for frontend in gone {
            self.applied.remove(&frontend);
            match self.remove(&frontend, &mut report) {
                Ok(name) => report.removed.push(format!("{name} {frontend}")),
                Err(err) => report.failed.push(format!("removing {frontend}: {err}")),
            }
        }
        for service in desired.services.values() {
            if self.applied.get(&service.frontend) == Some(service) {
                continue;
            }
            let existed = self.installed.contains_key(&service.frontend);
            match self.upsert(service, &mut report) {
                Ok(changed) => {
                    self.applied.insert(service.frontend, service.clone());
                    if changed {
                        let line = describe(service);
                        if existed { report.changed.push(line) } else { report.added.push(line) }
                    }
                }
                Err(err) => report.failed.push(format!("{} {}: {err}", service.name, service.frontend)),
            }
        }
        for id in std::mem::take(&mut self.orphan_backends) {
            if !self.backends.refs.contains_key(&id)
                && let Err(err) = self.free_backend(id, &mut report)
            {
                report.failed.push(format!("clearing backend id {id}: {err}"));
            }
        }
        // A backend freed by a removal and taken again by an upsert in the same apply (a
        // frontend that changed port or VIP) did not leave.
        let backends = &self.backends;
        report.released_backends.retain(|addr| !backends.by_addr.contains_key(addr));
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
                && old.name == service.name
                && old.slots.len() == layout.len()
                && old
                    .slots
                    .iter()
                    .zip(&layout)
                    .all(|(slot, addr)| slot.and_then(|id| self.backends.addr_of.get(&id)) == Some(addr));
            if unchanged {
                return Ok(false);
            }
        }
        let old_len = old.as_ref().map_or(0, |o| o.slots.len());
        let growth = layout.len().saturating_sub(old_len) as u64 + u64::from(old.is_none());
        if self.slots_used + growth > u64::from(self.limits.max_service_slots) {
            return Err(ApplyError::Limit(format!(
                "limits.max_service_slots = {} (in use: {})",
                self.limits.max_service_slots, self.slots_used
            )));
        }
        let service_id = match &old {
            Some(old) => old.service_id,
            None => self
                .service_ids
                .allocate()
                .ok_or_else(|| ApplyError::Limit(format!("limits.max_services = {}", self.limits.max_services)))?,
        };
        let new_ids = match self.acquire_backends(&layout, report) {
            Ok(ids) => ids,
            Err(err) => {
                if old.is_none() {
                    self.service_ids.release(service_id);
                }
                return Err(err);
            }
        };
        if let Err(err) = self.write_service(service, service_id, old.as_ref(), &new_ids, report) {
            // write_service rolled the kernel back to the old version (or removed the new
            // service): no slot names the new references any more.
            self.release_all(&new_ids, report);
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
                if let Err(err) = self.kernel.forget_affinity(service_id, &keep) {
                    report
                        .failed
                        .push(format!("{} {}: forgetting client affinity: {err}", service.name, service.frontend));
                }
            }
            let old_ids: Vec<u32> = old.slots.iter().flatten().copied().collect();
            self.release_all(&old_ids, report);
        }
        self.slots_used += growth;
        self.slots_used -= old_len.saturating_sub(layout.len()) as u64;
        let installed = Installed {
            service_id,
            algorithm: service.algorithm,
            affinity_secs: service.affinity_secs,
            name: service.name.clone(),
            slots: new_ids.into_iter().map(Some).collect(),
        };
        self.installed.insert(service.frontend, installed);
        Ok(true)
    }

    /// Releases one reference per id; a clearing failure is reported, not returned (the
    /// id is then kept, unusable, rather than handed out while the kernel still has it).
    fn release_all(&mut self, ids: &[u32], report: &mut ApplyReport) {
        for id in ids {
            if let Err(err) = self.release_backend(*id, report) {
                report.failed.push(format!("clearing backend id {id}: {err}"));
            }
        }
    }

    /// Writes a service's slots and entry in the safe order. On a failure it puts back
    /// what it changed (overwriting existing keys and deleting new ones cannot run out of
    /// room), so the kernel keeps the old version, or no trace of a new service.
    fn write_service(
        &mut self,
        service: &Service,
        service_id: u32,
        old: Option<&Installed>,
        new_ids: &[u32],
        report: &mut ApplyReport,
    ) -> Result<(), ApplyError> {
        let key = service_key(&service.frontend, 0);
        let entry = ServiceValue::entry(service_id, new_ids, service.algorithm, service.affinity_secs)
            .ok_or_else(|| ApplyError::Limit("65535 backends per service".into()))?;
        // (slot, what it held before): what to put back on failure.
        let mut undo: Vec<(u16, Option<u32>)> = Vec::new();
        let result = self.write_slots(service, entry, old, new_ids, &mut undo, report);
        if result.is_err() {
            for (slot, previous) in undo.into_iter().rev() {
                let rollback = match previous {
                    Some(backend_id) => {
                        self.kernel.set_slot(key.with_slot(slot), ServiceValue::slot(service_id, backend_id))
                    }
                    None => self.kernel.delete_slot(&key.with_slot(slot)),
                };
                if let Err(err) = rollback {
                    report
                        .failed
                        .push(format!("{} {}: rolling back slot {slot}: {err}", service.name, service.frontend));
                }
            }
            if old.is_none() {
                let _ = self.kernel.delete_slot(&key);
                let _ = self.kernel.delete_name(service_id);
            }
        }
        result
    }

    fn write_slots(
        &mut self,
        service: &Service,
        entry: ServiceValue,
        old: Option<&Installed>,
        new_ids: &[u32],
        undo: &mut Vec<(u16, Option<u32>)>,
        report: &mut ApplyReport,
    ) -> Result<(), ApplyError> {
        let key = service_key(&service.frontend, 0);
        let service_id = entry.service_id;
        match old {
            None => self.kernel.begin_service(service_id, &service.name)?,
            Some(old) if old.name != service.name => self.kernel.set_name(service_id, &service.name)?,
            Some(_) => {}
        }
        for (index, id) in new_ids.iter().enumerate() {
            let previous = old.and_then(|o| o.slots.get(index).copied().flatten());
            if previous != Some(*id) {
                let slot = (index + 1) as u16;
                self.kernel.set_slot(key.with_slot(slot), ServiceValue::slot(service_id, *id))?;
                undo.push((slot, previous));
                report.writes += 1;
            }
        }
        let old_count = old.map_or(0, |o| o.slots.len());
        // Slot 0 copies the first backend ids, so it changes with them too.
        let first_ids_changed = |o: &Installed| {
            !o.slots.iter().take(INLINE_SLOTS).copied().eq(new_ids.iter().take(INLINE_SLOTS).map(|id| Some(*id)))
        };
        let entry_changed = |o: &Installed| {
            o.slots.len() != new_ids.len()
                || o.algorithm != service.algorithm
                || o.affinity_secs != service.affinity_secs
                || first_ids_changed(o)
        };
        if old.is_none_or(entry_changed) {
            // The last write that can fail: after it, the new version is published.
            self.kernel.set_slot(key, entry)?;
            report.writes += 1;
        }
        undo.clear();
        for slot in new_ids.len() + 1..=old_count {
            // Deleting cannot run out of room; a failure leaves an unreachable slot (past the
            // count), which the next adoption removes.
            if let Err(err) = self.kernel.delete_slot(&key.with_slot(slot as u16)) {
                report
                    .failed
                    .push(format!("{} {}: deleting surplus slot {slot}: {err}", service.name, service.frontend));
            }
            report.writes += 1;
        }
        Ok(())
    }

    /// Removes a service: slot 0 first (it disappears for new connects at once), then its
    /// slots, then backends nobody names any more. Returns its name.
    fn remove(&mut self, frontend: &Frontend, report: &mut ApplyReport) -> Result<String, TableError> {
        let Some(old) = self.installed.get(frontend).cloned() else {
            return Ok(String::new());
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
        self.service_ids.release(old.service_id);
        self.slots_used -= 1 + old.slots.len() as u64;
        for id in old.slots.iter().flatten() {
            self.release_backend(*id, report)?;
        }
        Ok(old.name)
    }

    /// Ids for the slots' addresses, one more reference per slot; new addresses are
    /// written first.
    fn acquire_backends(&mut self, addrs: &[SocketAddr], report: &mut ApplyReport) -> Result<Vec<u32>, ApplyError> {
        let mut ids = Vec::with_capacity(addrs.len());
        for addr in addrs {
            let id = match self.backends.by_addr.get(addr) {
                Some(id) => *id,
                None => {
                    let allocated = self.backends.pool.allocate().ok_or_else(|| {
                        ApplyError::Limit(format!("limits.max_backends = {}", self.limits.max_backends))
                    });
                    let written = allocated.and_then(|id| {
                        self.kernel.set_backend(id, *addr).map(|()| id).map_err(|err| {
                            self.backends.pool.release(id);
                            ApplyError::from(err)
                        })
                    });
                    let id = match written {
                        Ok(id) => id,
                        Err(err) => {
                            for id in ids {
                                self.release_backend(id, report)?;
                            }
                            return Err(err);
                        }
                    };
                    report.writes += 1;
                    self.backends.by_addr.insert(*addr, id);
                    self.backends.addr_of.insert(id, *addr);
                    id
                }
            };
            *self.backends.refs.entry(id).or_default() += 1;
            ids.push(id);
        }
        Ok(ids)
    }

    fn release_backend(&mut self, id: u32, report: &mut ApplyReport) -> Result<(), TableError> {
        let refs = self.backends.refs.entry(id).or_default();
        *refs = refs.saturating_sub(1);
        if *refs == 0 {
            self.backends.refs.remove(&id);
            self.free_backend(id, report)?;
        }
        Ok(())
    }

    fn free_backend(&mut self, id: u32, report: &mut ApplyReport) -> Result<(), TableError> {
        self.kernel.clear_backend(id)?;
        report.writes += 1;
        if let Some(addr) = self.backends.addr_of.remove(&id) {
            self.backends.by_addr.remove(&addr);
            report.released_backends.push(addr);
        }
        self.backends.pool.release(id);
        Ok(())
    }
}

fn service_key(frontend: &Frontend, slot: u16) -> ServiceKey {
    ServiceKey::new(Ip6::from_ip(frontend.vip), frontend.port.to_be(), frontend.protocol.number(), slot)
}

fn frontend_of(key: &ServiceKey) -> Option<Frontend> {
    Some(Frontend { vip: key.vip.to_ip(), port: key.port(), protocol: Protocol::from_number(key.protocol)? })
}

/// Rewrites an adopted service entry whose copy of the first backend ids disagrees with
/// its slots (an agent stopped between writing a slot and publishing the entry). A slot
/// that is missing is left to the next apply, which rewrites it and then the entry.
fn repair_first_backends<K: KernelWriter>(
    kernel: &mut K,
    key: ServiceKey,
    entry: ServiceValue,
    slots: &[Option<u32>],
) -> Result<(), TableError> {
    let Some(first) = slots.iter().take(INLINE_SLOTS).copied().collect::<Option<Vec<u32>>>() else {
        return Ok(());
    };
    let first_backends = ServiceValue::first_backends_of(&first);
    if entry.first_backends == first_backends {
        return Ok(());
    }
    kernel.set_slot(key, ServiceValue { first_backends, ..entry })
}

fn describe(service: &Service) -> String {
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
