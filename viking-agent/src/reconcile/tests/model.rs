//! The maps as plain collections: every write lands in a model that checks, after each
//! single one, what a concurrent `connect()` could observe.

use std::{
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
};

use viking_common::{OutlierPolicy, ServiceKey, ServiceValue};

use super::super::{KernelWriter, adopt::frontend_of};
use crate::{
    dataplane::tables::{InstalledService, KernelSnapshot, TableError},
    model::Frontend,
};

/// The maps as plain collections.
#[derive(Default)]
pub(super) struct ModelKernel {
    pub(super) slots: HashMap<ServiceKey, ServiceValue>,
    pub(super) backends: HashMap<u32, SocketAddr>,
    pub(super) names: HashMap<u32, String>,
    pub(super) outlier: HashMap<u32, OutlierPolicy>,
    pub(super) writes: usize,
    /// When set: how many more new `SERVICES` keys fit before inserts fail (a full map).
    pub(super) room: Option<usize>,
}

impl ModelKernel {
    /// What a reader may rely on: a service entry's count never exceeds the slots written,
    /// and every slot, and the entry's copy of the first ones, names a backend that is set.
    pub(super) fn check_reader_view(&self) {
        for (key, value) in self.slots.iter().filter(|(k, _)| k.slot == 0) {
            for slot in 1..=value.count {
                let entry = self.slots.get(&key.with_slot(slot));
                let entry = entry.unwrap_or_else(|| panic!("{key:?}: count {} but slot {slot} missing", value.count));
                assert!(self.backends.contains_key(&entry.backend_id), "slot {slot} names a cleared backend");
            }
            for (index, id) in value.first_backends.iter().take(usize::from(value.count)).enumerate() {
                assert!(self.backends.contains_key(id), "copy of slot {} names a cleared backend", index + 1);
            }
        }
    }

    /// The backend id a connect reads for `slot` (as the kernel does: the entry's copy for
    /// the first slots, the slot's own entry after them).
    pub(super) fn backend_read(&self, key: &ServiceKey, slot: u16) -> Option<u32> {
        let entry = self.slots.get(&key.with_slot(0))?;
        match entry.first_backends.get(usize::from(slot) - 1) {
            Some(id) => Some(*id),
            None => self.slots.get(&key.with_slot(slot)).map(|v| v.backend_id),
        }
    }

    pub(super) fn snapshot(&self) -> KernelSnapshot {
        let mut snapshot = KernelSnapshot::default();
        for (key, value) in self.slots.iter().filter(|(k, _)| k.slot == 0) {
            let slots = (1..=value.count).map(|s| self.slots.get(&key.with_slot(s)).map(|v| v.backend_id)).collect();
            let name = self.names.get(&value.service_id).cloned().unwrap_or_default();
            let outlier = self.outlier.get(&value.service_id).copied().unwrap_or_default();
            snapshot.services.insert(*key, InstalledService { entry: *value, slots, name, outlier });
        }
        snapshot.backends = self.backends.iter().map(|(id, addr)| (*id, *addr)).collect();
        snapshot
    }

    /// The services as a client would see them: frontend -> backends in slot order.
    pub(super) fn served(&self) -> BTreeMap<Frontend, Vec<SocketAddr>> {
        self.snapshot()
            .services
            .iter()
            .map(|(key, s)| {
                let ids = (1..=s.entry.count).map(|slot| self.backend_read(key, slot).unwrap());
                (frontend_of(key).unwrap(), ids.map(|id| self.backends[&id]).collect())
            })
            .collect()
    }
}

impl KernelWriter for ModelKernel {
    fn set_slot(&mut self, key: ServiceKey, value: ServiceValue) -> Result<(), TableError> {
        if !self.slots.contains_key(&key)
            && let Some(room) = &mut self.room
        {
            if *room == 0 {
                let source = aya::maps::MapError::KeyNotFound;
                return Err(TableError::Map { name: "VIKING_SERVICES", source });
            }
            *room -= 1;
        }
        self.slots.insert(key, value);
        self.writes += 1;
        self.check_reader_view();
        Ok(())
    }
    fn delete_slot(&mut self, key: &ServiceKey) -> Result<(), TableError> {
        self.slots.remove(key);
        self.writes += 1;
        self.check_reader_view();
        Ok(())
    }
    fn set_backend(&mut self, id: u32, addr: SocketAddr) -> Result<(), TableError> {
        self.backends.insert(id, addr);
        self.writes += 1;
        Ok(())
    }
    fn clear_backend(&mut self, id: u32) -> Result<(), TableError> {
        self.backends.remove(&id);
        self.writes += 1;
        self.check_reader_view();
        Ok(())
    }
    fn begin_service(&mut self, service_id: u32, name: &str) -> Result<(), TableError> {
        self.names.insert(service_id, name.into());
        Ok(())
    }
    fn set_name(&mut self, service_id: u32, name: &str) -> Result<(), TableError> {
        self.names.insert(service_id, name.into());
        Ok(())
    }
    fn set_outlier(&mut self, service_id: u32, policy: OutlierPolicy) -> Result<(), TableError> {
        self.outlier.insert(service_id, policy);
        Ok(())
    }
    fn delete_name(&mut self, service_id: u32) -> Result<(), TableError> {
        self.names.remove(&service_id);
        Ok(())
    }
    fn forget_affinity(&mut self, _service_id: u32, _keep: &std::collections::HashSet<u32>) -> Result<(), TableError> {
        Ok(())
    }
}
