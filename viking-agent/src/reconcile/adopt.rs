//! Adoption: a reconciler that starts from what the kernel already holds (pinned by an
//! earlier agent), reads it back as services, and repairs what an interrupted agent left.

use std::{collections::BTreeMap, sync::Arc};

use viking_common::{Algorithm, ServiceKey};

use super::{Installed, KernelWriter, Reconciler, backends::BackendIds, ids::IdPool, slots, write};
use crate::{
    dataplane::tables::{KernelSnapshot, TableError},
    model::Limits,
    model::{Frontend, OutlierDetection, Protocol, ServedServices, Service},
};

impl<K: KernelWriter> Reconciler<K> {
    /// Starts from what the kernel already holds (pinned by an earlier agent), so the first
    /// apply only writes differences and nothing is flushed.
    pub fn adopt(mut kernel: K, snapshot: KernelSnapshot, limits: Limits) -> Result<Self, TableError> {
        let mut service_ids = IdPool::new(limits.max_services);
        let mut backends = BackendIds::new(limits.max_backends);
        for (id, addr) in &snapshot.backends {
            backends.adopt(*id, *addr);
        }
        let mut installed = BTreeMap::new();
        let mut slots_used = 0u64;
        for (key, service) in snapshot.services {
            let Some(frontend) = frontend_of(&key) else {
                continue;
            };
            service_ids.claim(service.entry.service_id);
            let slots: Vec<Option<u32>> =
                service.slots.iter().map(|slot| slot.filter(|id| backends.addr_of(*id).is_some())).collect();
            for id in slots.iter().flatten() {
                backends.add_ref(*id);
            }
            write::repair_first_backends(&mut kernel, key, service.entry, &slots)?;
            slots_used += 1 + slots.len() as u64;
            installed.insert(
                frontend,
                Installed {
                    service_id: service.entry.service_id,
                    algorithm: Algorithm::from_u8(service.entry.algorithm),
                    affinity_secs: service.entry.affinity_secs,
                    outlier: service.outlier,
                    name: service.name.into(),
                    slots,
                },
            );
        }
        for key in &snapshot.orphan_slots {
            kernel.delete_slot(key)?;
        }
        let orphan_backends = backends.unreferenced();
        let mut reconciler = Self {
            kernel,
            limits,
            installed,
            service_ids,
            backends,
            slots_used,
            orphan_backends,
            served: ServedServices::default(),
        };
        let adopted: Vec<Service> = reconciler.installed.iter().map(|(f, i)| reconciler.read_back(f, i)).collect();
        for service in adopted {
            reconciler.served.insert(Arc::new(service));
        }
        Ok(reconciler)
    }

    /// An installed service as the kernel holds it.
    fn read_back(&self, frontend: &Frontend, installed: &Installed) -> Service {
        let addrs: Vec<_> = installed.slots.iter().filter_map(|slot| self.backends.addr_of((*slot)?)).collect();
        Service {
            name: installed.name.clone(),
            frontend: *frontend,
            algorithm: installed.algorithm,
            affinity_secs: installed.affinity_secs,
            outlier: OutlierDetection::from_policy(&installed.outlier),
            backends: slots::backends_of(&addrs),
        }
    }
}

pub(super) fn frontend_of(key: &ServiceKey) -> Option<Frontend> {
    Some(Frontend { vip: key.vip.to_ip(), port: key.port(), protocol: Protocol::from_number(key.protocol)? })
}
