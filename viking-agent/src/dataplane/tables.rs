//! Typed access to the pinned maps: the only place that reads or writes kernel entries.

use std::{
    collections::{BTreeMap, HashSet},
    net::SocketAddr,
};

use aya::{
    Ebpf,
    maps::{Array, HashMap, Map, MapData, MapError, PerCpuArray, PerCpuValues},
};
use viking_common::{
    AffinityKey, AffinityValue, Backend, BackendHealth, BackendStats, Ip6, OutlierPolicy, ServiceKey, ServiceName,
    ServiceStats, ServiceValue, names,
};

use super::pins::PinDir;

/// Handles to the maps the agent reads and writes.
pub struct KernelTables {
    services: HashMap<MapData, ServiceKey, ServiceValue>,
    backends: Array<MapData, Backend>,
    stats: PerCpuArray<MapData, ServiceStats>,
    names: HashMap<MapData, u32, ServiceName>,
    backend_stats: PerCpuArray<MapData, BackendStats>,
    backend_active: Array<MapData, u64>,
    affinity: HashMap<MapData, AffinityKey, AffinityValue>,
    outlier: Array<MapData, OutlierPolicy>,
    health: Array<MapData, BackendHealth>,
}

impl std::fmt::Debug for KernelTables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelTables").finish_non_exhaustive()
    }
}

/// Why the maps could not be opened, read or written.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// A map is missing from the object or the pin directory.
    #[error("map {name} not found: {detail}")]
    Missing {
        /// Map name.
        name: &'static str,
        /// Where it was looked for.
        detail: String,
    },
    /// A map operation failed.
    #[error("map {name}: {source}")]
    Map {
        /// Map name.
        name: &'static str,
        /// The aya error, which carries the errno.
        source: MapError,
    },
}

/// Wraps an aya error with the name of the map it came from.
pub(crate) fn map_err(name: &'static str) -> impl FnOnce(MapError) -> TableError {
    move |source| TableError::Map { name, source }
}

/// One service as the kernel holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstalledService {
    /// Slot 0.
    pub entry: ServiceValue,
    /// Backend ids of slots `1..=count`, in slot order (a missing slot reads as `None`).
    pub slots: Vec<Option<u32>>,
    /// From `SERVICE_NAMES`; empty if unknown.
    pub name: String,
    /// From `OUTLIER_POLICY`.
    pub outlier: OutlierPolicy,
}

/// Everything the kernel holds, read back from the maps.
#[derive(Clone, Debug, Default)]
pub struct KernelSnapshot {
    /// Services by frontend key (slot 0).
    pub services: BTreeMap<ServiceKey, InstalledService>,
    /// Backend slots whose service entry (slot 0) is missing: left over by an interrupted
    /// agent, deleted by the reconciler.
    pub orphan_slots: Vec<ServiceKey>,
    /// Used backend ids and their addresses.
    pub backends: BTreeMap<u32, SocketAddr>,
}

/// Where a set of typed map handles comes from.
#[derive(Debug)]
pub enum MapSource<'a> {
    /// A freshly loaded object: the maps are taken out of it.
    Object(&'a mut Ebpf),
    /// The pin directory of an installation (no programs are loaded).
    Pinned(&'a PinDir),
}

impl MapSource<'_> {
    /// Map `name`, as its typed view `T`.
    pub fn typed<T: TryFrom<Map, Error = MapError>>(&mut self, name: &'static str) -> Result<T, TableError> {
        let map = match self {
            Self::Object(ebpf) => ebpf
                .take_map(name)
                .ok_or_else(|| TableError::Missing { name, detail: "not in the eBPF object".into() })?,
            Self::Pinned(pins) => {
                let path = pins.map(name);
                let data = MapData::from_pin(&path)
                    .map_err(|err| TableError::Missing { name, detail: format!("{}: {err}", path.display()) })?;
                Map::from_map_data(data).map_err(map_err(name))?
            }
        };
        T::try_from(map).map_err(map_err(name))
    }
}

impl KernelTables {
    /// Opens the service maps.
    pub fn open(mut source: MapSource<'_>) -> Result<Self, TableError> {
        Ok(Self {
            services: source.typed(names::SERVICES)?,
            backends: source.typed(names::BACKENDS)?,
            stats: source.typed(names::SERVICE_STATS)?,
            names: source.typed(names::SERVICE_NAMES)?,
            backend_stats: source.typed(names::BACKEND_STATS)?,
            backend_active: source.typed(names::BACKEND_ACTIVE)?,
            affinity: source.typed(names::AFFINITY)?,
            outlier: source.typed(names::OUTLIER_POLICY)?,
            health: source.typed(names::BACKEND_HEALTH)?,
        })
    }

    /// Reads every service, slot and backend.
    pub fn snapshot(&self) -> Result<KernelSnapshot, TableError> {
        let mut entries = BTreeMap::new();
        for item in self.services.iter() {
            let (key, value) = item.map_err(map_err(names::SERVICES))?;
            entries.insert(key, value);
        }
        let mut snapshot = KernelSnapshot::default();
        for (key, value) in &entries {
            if key.slot == 0 {
                let slots =
                    (1..=value.count).map(|slot| entries.get(&key.with_slot(slot)).map(|v| v.backend_id)).collect();
                let name = self.names.get(&value.service_id, 0).map(|n| n.as_str().to_owned()).unwrap_or_default();
                let outlier = self.outlier.get(&value.service_id, 0).unwrap_or_default();
                snapshot.services.insert(*key, InstalledService { entry: *value, slots, name, outlier });
            }
        }
        for key in entries.keys().filter(|k| k.slot != 0) {
            let owner = snapshot.services.get(&key.with_slot(0));
            if owner.is_none_or(|s| key.slot > s.entry.count) {
                snapshot.orphan_slots.push(*key);
            }
        }
        for (id, backend) in self.backends.iter().enumerate() {
            let backend = backend.map_err(map_err(names::BACKENDS))?;
            if backend.is_set() {
                let id = u32::try_from(id).expect("array index fits u32");
                snapshot.backends.insert(id, SocketAddr::new(backend.address.to_ip(), backend.port()));
            }
        }
        Ok(snapshot)
    }

    /// Counters of a service, summed over CPUs.
    pub fn stats(&self, service_id: u32) -> Result<ServiceStats, TableError> {
        let per_cpu = self.stats.get(&service_id, 0).map_err(map_err(names::SERVICE_STATS))?;
        Ok(per_cpu.iter().fold(ServiceStats::default(), |sum, s| ServiceStats {
            redirected: sum.redirected + s.redirected,
            refused_no_backend: sum.refused_no_backend + s.refused_no_backend,
            refused_by_policy: sum.refused_by_policy + s.refused_by_policy,
        }))
    }

    /// Connects sent to a backend (summed over CPUs) and its open connections (counted for
    /// `least_conn` services).
    pub fn backend_stats(&self, backend_id: u32) -> Result<(u64, u64), TableError> {
        let per_cpu = self.backend_stats.get(&backend_id, 0).map_err(map_err(names::BACKEND_STATS))?;
        let connects = per_cpu.iter().map(|s| s.connects).sum();
        let active = self.backend_active.get(&backend_id, 0).map_err(map_err(names::BACKEND_ACTIVE))?;
        Ok((connects, active))
    }

    /// What the kernel has seen of a backend's connects (outlier ejection).
    pub fn backend_health(&self, backend_id: u32) -> Result<BackendHealth, TableError> {
        self.health.get(&backend_id, 0).map_err(map_err(names::BACKEND_HEALTH))
    }

    /// Writes the outlier policy of a service id.
    pub fn set_outlier(&mut self, service_id: u32, policy: OutlierPolicy) -> Result<(), TableError> {
        self.outlier.set(service_id, policy, 0).map_err(map_err(names::OUTLIER_POLICY))
    }

    /// Writes one `SERVICES` entry (a service entry or a backend slot).
    pub fn set_slot(&mut self, key: ServiceKey, value: ServiceValue) -> Result<(), TableError> {
        self.services.insert(key, value, 0).map_err(map_err(names::SERVICES))
    }

    /// Deletes one `SERVICES` entry; a missing entry is not an error.
    pub fn delete_slot(&mut self, key: &ServiceKey) -> Result<(), TableError> {
        match self.services.remove(key) {
            Err(MapError::KeyNotFound) => Ok(()),
            other => other.map_err(map_err(names::SERVICES)),
        }
    }

    /// Writes the address of a newly assigned backend id and zeroes its connect counter and
    /// health. (Its open-connection count is left alone: sockets of the id's previous
    /// backend still hold it and release it as they close.)
    pub fn set_backend(&mut self, id: u32, addr: SocketAddr) -> Result<(), TableError> {
        let zero = zeroed_per_cpu::<BackendStats>().map_err(map_err(names::BACKEND_STATS))?;
        self.backend_stats.set(id, zero, 0).map_err(map_err(names::BACKEND_STATS))?;
        self.health.set(id, BackendHealth::default(), 0).map_err(map_err(names::BACKEND_HEALTH))?;
        let backend = Backend { address: Ip6::from_ip(addr.ip()), port_be: addr.port().to_be(), _pad0: 0 };
        self.backends.set(id, backend, 0).map_err(map_err(names::BACKENDS))
    }

    /// Marks `id` unused.
    pub fn clear_backend(&mut self, id: u32) -> Result<(), TableError> {
        self.backends.set(id, Backend::default(), 0).map_err(map_err(names::BACKENDS))
    }

    /// Starts a new service id: zero counters, record its name.
    pub fn begin_service(&mut self, service_id: u32, name: &str) -> Result<(), TableError> {
        let zero = zeroed_per_cpu::<ServiceStats>().map_err(map_err(names::SERVICE_STATS))?;
        self.stats.set(service_id, zero, 0).map_err(map_err(names::SERVICE_STATS))?;
        self.set_name(service_id, name)
    }

    /// Deletes the affinity entries of `service_id` whose backend is not in `keep`, so that
    /// no client stays pinned to a backend that left the service.
    pub fn forget_affinity(&mut self, service_id: u32, keep: &HashSet<u32>) -> Result<(), TableError> {
        let mut stale = Vec::new();
        for item in self.affinity.iter() {
            let (key, value) = match item {
                Ok(entry) => entry,
                // An LRU entry evicted while iterating: nothing to forget.
                Err(MapError::KeyNotFound) => continue,
                Err(err) => return Err(map_err(names::AFFINITY)(err)),
            };
            if key.service_id == service_id && !keep.contains(&value.backend_id) {
                stale.push(key);
            }
        }
        for key in stale {
            match self.affinity.remove(&key) {
                Ok(()) | Err(MapError::KeyNotFound) => {}
                Err(err) => return Err(map_err(names::AFFINITY)(err)),
            }
        }
        Ok(())
    }

    /// Records the name of a service id.
    pub fn set_name(&mut self, service_id: u32, name: &str) -> Result<(), TableError> {
        self.names.insert(service_id, ServiceName::new(name), 0).map_err(map_err(names::SERVICE_NAMES))
    }

    /// Forgets the name of a released service id.
    pub fn delete_name(&mut self, service_id: u32) -> Result<(), TableError> {
        match self.names.remove(&service_id) {
            Err(MapError::KeyNotFound) => Ok(()),
            other => other.map_err(map_err(names::SERVICE_NAMES)),
        }
    }
}

/// One zeroed value per possible CPU, to reset a per-CPU array element.
fn zeroed_per_cpu<T: aya::Pod + Default + Clone>() -> Result<PerCpuValues<T>, MapError> {
    let cpus = aya::util::nr_cpus().map_err(|(_, err)| MapError::IoError(err))?;
    PerCpuValues::try_from(vec![T::default(); cpus]).map_err(MapError::IoError)
}
