//! Keeps `CGROUP_POLICY`, `ALLOWED` and `OVERLAYS` equal to the desired [`KernelPolicy`],
//! writing only differences, in an order that never refuses a declared connect: new
//! declarations before stricter modes, looser modes before removed declarations.

use std::net::{IpAddr, SocketAddr};

use aya::{
    Ebpf,
    maps::{Array, HashMap, Map, MapData, MapError},
};
use viking_common::{AllowKey, CgroupPolicy, Ip6, OverlayKey, OverlayTarget, PolicyMode, Settings, names};

use super::KernelPolicy;
use crate::{
    dataplane::{pins::PinDir, tables::TableError},
    model::Protocol,
};

/// The policy maps and the settings entry.
pub struct PolicyTables {
    modes: HashMap<MapData, u64, CgroupPolicy>,
    allowed: HashMap<MapData, AllowKey, u8>,
    overlays: HashMap<MapData, OverlayKey, OverlayTarget>,
    settings: Array<MapData, Settings>,
}

impl std::fmt::Debug for PolicyTables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyTables").finish_non_exhaustive()
    }
}

fn map_err(name: &'static str) -> impl FnOnce(MapError) -> TableError {
    move |source| TableError::Map { name, source }
}

impl PolicyTables {
    /// Takes the policy maps out of a freshly loaded object.
    pub fn from_ebpf(ebpf: &mut Ebpf) -> Result<Self, TableError> {
        Self::from_maps(|name| {
            ebpf.take_map(name).ok_or_else(|| TableError::Missing { name, detail: "not in the eBPF object".into() })
        })
    }

    /// Opens the pinned policy maps of an installation.
    pub fn open_pinned(pins: &PinDir) -> Result<Self, TableError> {
        Self::from_maps(|name| {
            let path = pins.map(name);
            let data = MapData::from_pin(&path)
                .map_err(|err| TableError::Missing { name, detail: format!("{}: {err}", path.display()) })?;
            Map::from_map_data(data).map_err(map_err(name))
        })
    }

    fn from_maps(mut take: impl FnMut(&'static str) -> Result<Map, TableError>) -> Result<Self, TableError> {
        fn typed<T: TryFrom<Map, Error = MapError>>(map: Map, name: &'static str) -> Result<T, TableError> {
            T::try_from(map).map_err(map_err(name))
        }
        Ok(Self {
            modes: typed(take(names::CGROUP_POLICY)?, names::CGROUP_POLICY)?,
            allowed: typed(take(names::ALLOWED)?, names::ALLOWED)?,
            overlays: typed(take(names::OVERLAYS)?, names::OVERLAYS)?,
            settings: typed(take(names::SETTINGS)?, names::SETTINGS)?,
        })
    }

    /// Writes the settings entry: the ambassador address of port overlays, whether any
    /// cgroup has a policy, the size of the recent-sockets table.
    fn write_settings(&mut self, host: &HostSettings, policy_active: bool) -> Result<(), TableError> {
        let settings = Settings {
            ambassador: host.ambassador.map(Ip6::from_ip).unwrap_or_default(),
            flags: if policy_active { Settings::POLICY_ACTIVE } else { 0 },
            recent_sockets: host.recent_sockets,
        };
        self.settings.set(0, settings, 0).map_err(map_err(names::SETTINGS))
    }

    /// What the maps hold now (pinned by an earlier agent).
    pub fn read(&self) -> Result<KernelPolicy, TableError> {
        let mut policy = KernelPolicy::default();
        for item in self.modes.iter() {
            let (cgroup, value) = item.map_err(map_err(names::CGROUP_POLICY))?;
            policy.modes.insert(cgroup, PolicyMode::from_u8(value.mode));
        }
        for item in self.allowed.keys() {
            let key = item.map_err(map_err(names::ALLOWED))?;
            policy.allowed.insert((key.cgroup_id, key.vip.to_ip()));
        }
        for item in self.overlays.iter() {
            let (key, target) = item.map_err(map_err(names::OVERLAYS))?;
            let Some(protocol) = Protocol::from_number(key.protocol) else { continue };
            let vip = SocketAddr::new(target.vip.to_ip(), u16::from_be(target.port_be));
            policy.overlays.insert((key.cgroup_id, u16::from_be(key.port_be), protocol), (vip.ip(), vip.port()));
        }
        Ok(policy)
    }
}

/// Host-wide values of the `SETTINGS` entry that do not depend on the policy.
#[derive(Clone, Copy, Debug)]
pub struct HostSettings {
    /// The ambassador address of port overlays (`None`: no overlays).
    pub ambassador: Option<IpAddr>,
    /// Entries of the recent-sockets table.
    pub recent_sockets: u32,
}

/// The single writer of the policy maps (and of the settings entry).
#[derive(Debug)]
pub struct PolicyWriter {
    tables: PolicyTables,
    current: KernelPolicy,
    host: HostSettings,
}

impl PolicyWriter {
    /// Adopts what the maps hold and writes the settings entry.
    pub fn adopt(mut tables: PolicyTables, host: HostSettings) -> Result<Self, TableError> {
        let current = tables.read()?;
        tables.write_settings(&host, !current.modes.is_empty())?;
        Ok(Self { tables, current, host })
    }

    /// Makes the maps hold `desired`; returns the number of writes.
    pub fn apply(&mut self, desired: &KernelPolicy) -> Result<usize, TableError> {
        let mut writes = 0;
        let (was_active, active) = (!self.current.modes.is_empty(), !desired.modes.is_empty());
        if active && !was_active {
            // Switch the check on before the first mode lands; off after the last left.
            self.tables.write_settings(&self.host, true)?;
        }
        let t = &mut self.tables;
        for (cgroup_id, vip) in desired.allowed.difference(&self.current.allowed) {
            t.allowed
                .insert(AllowKey { cgroup_id: *cgroup_id, vip: Ip6::from_ip(*vip) }, 1, 0)
                .map_err(map_err(names::ALLOWED))?;
            writes += 1;
        }
        for (key, target) in &desired.overlays {
            if self.current.overlays.get(key) != Some(target) {
                t.overlays.insert(overlay_key(key), overlay_target(target), 0).map_err(map_err(names::OVERLAYS))?;
                writes += 1;
            }
        }
        for (cgroup_id, mode) in &desired.modes {
            if self.current.modes.get(cgroup_id) != Some(mode) {
                let value = CgroupPolicy { mode: *mode as u8, _pad: [0; 7] };
                t.modes.insert(cgroup_id, value, 0).map_err(map_err(names::CGROUP_POLICY))?;
                writes += 1;
            }
        }
        for cgroup_id in self.current.modes.keys().filter(|c| !desired.modes.contains_key(c)) {
            remove(&mut t.modes, cgroup_id, names::CGROUP_POLICY)?;
            writes += 1;
        }
        for key in self.current.overlays.keys().filter(|k| !desired.overlays.contains_key(k)) {
            remove(&mut t.overlays, &overlay_key(key), names::OVERLAYS)?;
            writes += 1;
        }
        for (cgroup_id, vip) in self.current.allowed.difference(&desired.allowed) {
            remove(&mut t.allowed, &AllowKey { cgroup_id: *cgroup_id, vip: Ip6::from_ip(*vip) }, names::ALLOWED)?;
            writes += 1;
        }
        if was_active && !active {
            self.tables.write_settings(&self.host, false)?;
        }
        self.current = desired.clone();
        Ok(writes)
    }
}

fn overlay_key(&(cgroup_id, port, protocol): &(u64, u16, Protocol)) -> OverlayKey {
    OverlayKey { cgroup_id, port_be: port.to_be(), protocol: protocol.number(), _pad: [0; 5] }
}

fn overlay_target(&(vip, port): &(IpAddr, u16)) -> OverlayTarget {
    OverlayTarget { vip: Ip6::from_ip(vip), port_be: port.to_be(), _pad: 0 }
}

fn remove<K: aya::Pod, V: aya::Pod>(
    map: &mut HashMap<MapData, K, V>,
    key: &K,
    name: &'static str,
) -> Result<(), TableError> {
    match map.remove(key) {
        Ok(()) | Err(MapError::KeyNotFound) => Ok(()),
        Err(err) => Err(map_err(name)(err)),
    }
}
