//! Keeps `CGROUP_POLICY`, `ALLOWED`, `OVERLAYS` and `CONTAINER_SCOPE` equal to the desired
//! [`KernelPolicy`], writing only differences, in an order that never refuses a declared
//! connect: new declarations before stricter modes, looser modes before removed
//! declarations, container entries before a stricter backstop.

use std::net::{IpAddr, SocketAddr};

use aya::maps::{Array, HashMap, MapData, MapError, PerCpuArray};
use viking_common::{
    AllowKey, CgroupPolicy, ContainerScope, Ip6, OverlayKey, OverlayTarget, PolicyMode, Settings,
    UnknownContainerStats, limits, names,
};

use super::{KernelPolicy, PolicyWriteError};
use crate::{
    dataplane::tables::{MapSource, TableError, map_err},
    model::{Protocol, RuntimeScope},
};

/// The policy maps and the settings entry.
pub struct PolicyTables {
    modes: HashMap<MapData, u64, CgroupPolicy>,
    allowed: HashMap<MapData, AllowKey, u8>,
    overlays: HashMap<MapData, OverlayKey, OverlayTarget>,
    settings: Array<MapData, Settings>,
    scope: Array<MapData, ContainerScope>,
    unknown: PerCpuArray<MapData, UnknownContainerStats>,
}

impl std::fmt::Debug for PolicyTables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyTables").finish_non_exhaustive()
    }
}

impl PolicyTables {
    /// Opens the policy maps and the settings entry.
    pub fn open(mut source: MapSource<'_>) -> Result<Self, TableError> {
        Ok(Self {
            modes: source.typed(names::CGROUP_POLICY)?,
            allowed: source.typed(names::ALLOWED)?,
            overlays: source.typed(names::OVERLAYS)?,
            settings: source.typed(names::SETTINGS)?,
            scope: source.typed(names::CONTAINER_SCOPE)?,
            unknown: source.typed(names::UNKNOWN_CONTAINERS)?,
        })
    }

    /// VIP connects from cgroups below the backstop's parent that had no entry yet, summed
    /// over CPUs.
    pub fn unknown_container_stats(&self) -> Result<UnknownContainerStats, TableError> {
        let per_cpu = self.unknown.get(&0, 0).map_err(map_err(names::UNKNOWN_CONTAINERS))?;
        Ok(per_cpu.iter().fold(UnknownContainerStats::default(), |sum, cpu| UnknownContainerStats {
            refused: sum.refused + cpu.refused,
            audited: sum.audited + cpu.audited,
        }))
    }

    /// Writes the backstop (`None`: off).
    fn write_scope(&mut self, scope: Option<(RuntimeScope, PolicyMode)>) -> Result<(), TableError> {
        let value = scope.map_or_else(ContainerScope::default, |(scope, mode)| ContainerScope {
            parent_cgroup_id: scope.cgroup_id,
            parent_level: scope.level,
            mode: mode as u8,
            _pad: [0; 3],
        });
        self.scope.set(0, value, 0).map_err(map_err(names::CONTAINER_SCOPE))
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
        let scope = self.scope.get(&0, 0).map_err(map_err(names::CONTAINER_SCOPE))?;
        if scope.parent_cgroup_id != 0 {
            let runtime = RuntimeScope { cgroup_id: scope.parent_cgroup_id, level: scope.parent_level };
            policy.scope = Some((runtime, PolicyMode::from_u8(scope.mode)));
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
        tables.write_settings(&host, current.is_active())?;
        Ok(Self { tables, current, host })
    }

    /// Makes the maps hold `desired`, as far as they can: every entry is tried, a failed
    /// one (a full map) is reported naming the map's size, and the writer remembers exactly
    /// what the kernel holds. Returns the number of writes and the errors.
    ///
    /// Order: looser first (modes that go, overlays and declarations that go), then
    /// declarations and overlays that come, then modes that come or tighten; so a
    /// container never has a stricter mode than its declarations allow for.
    pub fn apply(&mut self, desired: &KernelPolicy) -> (usize, Vec<PolicyWriteError>) {
        let (mut writes, mut errors) = (0, Vec::new());
        let (was_active, will_be_active) = (self.current.is_active(), desired.is_active());
        if will_be_active && !was_active {
            // Switch the check on before the first mode lands.
            if let Err(err) = self.tables.write_settings(&self.host, true) {
                errors.push(err.into());
            }
        }
        let strictness = |scope: Option<(RuntimeScope, PolicyMode)>| scope.map_or(0, |(_, mode)| mode.strictness());
        let scope_changes = desired.scope != self.current.scope;
        let scope_first = scope_changes && strictness(desired.scope) < strictness(self.current.scope);
        if scope_first {
            match self.tables.write_scope(desired.scope) {
                Ok(()) => {
                    writes += 1;
                    self.current.scope = desired.scope;
                }
                Err(err) => errors.push(err.into()),
            }
        }
        // `capacity`: the size of the map an insert goes to, and what its entries are.
        let mut outcome = |result: Result<(), TableError>, capacity: Option<(u32, &'static str)>| match result {
            Ok(()) => {
                writes += 1;
                true
            }
            Err(error) => {
                errors.push(match capacity {
                    None => error.into(),
                    Some((capacity, entries)) => PolicyWriteError::Insert { error, capacity, entries },
                });
                false
            }
        };
        let t = &mut self.tables;
        let current = &mut self.current;
        let gone_modes: Vec<u64> = current.modes.keys().filter(|c| !desired.modes.contains_key(c)).copied().collect();
        for cgroup_id in gone_modes {
            if outcome(remove(&mut t.modes, &cgroup_id, names::CGROUP_POLICY), None) {
                current.modes.remove(&cgroup_id);
            }
        }
        let gone_overlays: Vec<(u64, u16, Protocol)> =
            current.overlays.keys().filter(|k| !desired.overlays.contains_key(k)).copied().collect();
        for key in gone_overlays {
            if outcome(remove(&mut t.overlays, &overlay_key(&key), names::OVERLAYS), None) {
                current.overlays.remove(&key);
            }
        }
        let gone_allowed: Vec<(u64, IpAddr)> = current.allowed.difference(&desired.allowed).copied().collect();
        for (cgroup_id, vip) in gone_allowed {
            if outcome(remove(&mut t.allowed, &AllowKey { cgroup_id, vip: Ip6::from_ip(vip) }, names::ALLOWED), None) {
                current.allowed.remove(&(cgroup_id, vip));
            }
        }
        let new_allowed: Vec<(u64, IpAddr)> = desired.allowed.difference(&current.allowed).copied().collect();
        for (cgroup_id, vip) in new_allowed {
            let key = AllowKey { cgroup_id, vip: Ip6::from_ip(vip) };
            let written = t.allowed.insert(key, 1, 0).map_err(map_err(names::ALLOWED));
            if outcome(written, Some((limits::MAX_DECLARATIONS, "declarations"))) {
                current.allowed.insert((cgroup_id, vip));
            }
        }
        for (key, target) in &desired.overlays {
            if current.overlays.get(key) != Some(target) {
                let written =
                    t.overlays.insert(overlay_key(key), overlay_target(target), 0).map_err(map_err(names::OVERLAYS));
                if outcome(written, Some((limits::MAX_DECLARATIONS, "overlays"))) {
                    current.overlays.insert(*key, *target);
                }
            }
        }
        for (cgroup_id, mode) in &desired.modes {
            if current.modes.get(cgroup_id) != Some(mode) {
                let value = CgroupPolicy { mode: *mode as u8, _pad: [0; 7] };
                let written = t.modes.insert(cgroup_id, value, 0).map_err(map_err(names::CGROUP_POLICY));
                if outcome(written, Some((limits::MAX_CGROUPS, "containers with a policy"))) {
                    current.modes.insert(*cgroup_id, *mode);
                }
            }
        }
        if scope_changes && !scope_first {
            match self.tables.write_scope(desired.scope) {
                Ok(()) => {
                    writes += 1;
                    self.current.scope = desired.scope;
                }
                Err(err) => errors.push(err.into()),
            }
        }
        if was_active && !self.current.is_active() {
            // Off after the last mode left.
            if let Err(err) = self.tables.write_settings(&self.host, false) {
                errors.push(err.into());
            }
        }
        (writes, errors)
    }
}

impl KernelPolicy {
    /// Whether the programs must look at policy at all (`Settings::POLICY_ACTIVE`).
    fn is_active(&self) -> bool {
        !self.modes.is_empty() || self.scope.is_some()
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
