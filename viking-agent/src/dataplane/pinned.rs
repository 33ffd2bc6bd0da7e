//! What is pinned already, checked before it is adopted: the layout record of the
//! installation (read, and written once the programs are attached), each pinned map's
//! key and value sizes, and the sizes the maps really have.

use std::path::Path;

use aya::{
    Ebpf,
    maps::{Array, Map, MapData, MapInfo},
};
use viking_common::{LAYOUT_READABLE_BY, LAYOUT_VERSION, layout::Sizing, names};

use super::{DataplaneError, PINNED_MAPS, layout, pins::PinDir, tables};
use crate::model::Limits;

/// The layout record of an installation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PinnedLayout {
    /// Its layout version.
    pub version: u32,
    /// The oldest layout whose agents can use it.
    pub readable_by: u32,
}

/// The layout of the pins under `pins`: `None` when nothing is pinned there, layout 1 for
/// pins made before the layout was recorded (or whose record was never written).
pub fn pinned_layout(pins: &PinDir) -> Result<Option<PinnedLayout>, DataplaneError> {
    let path = pins.map(names::LAYOUT);
    if !path.exists() {
        let legacy = PINNED_MAPS.iter().any(|spec| pins.map(spec.name).exists());
        return Ok(legacy.then_some(PinnedLayout { version: 1, readable_by: 1 }));
    }
    let unreadable = |err: &dyn std::fmt::Display| DataplaneError::PinDir {
        path: path.clone(),
        source: std::io::Error::other(err.to_string()),
    };
    let data = MapData::from_pin(&path).map_err(|err| unreadable(&err))?;
    let layout: Array<MapData, u32> = Map::Array(data).try_into().map_err(|err| unreadable(&err))?;
    let version = layout.get(&0, 0).map_err(|err| unreadable(&err))?.max(1);
    // A record with one entry (a layout map made before readable-by existed) says only its
    // version: readable by that version alone.
    let readable_by = match layout.len() {
        0 | 1 => version,
        _ => layout.get(&1, 0).map_err(|err| unreadable(&err))?.clamp(1, version),
    };
    Ok(Some(PinnedLayout { version, readable_by }))
}

/// Records this agent's layout in the (adopted or new) `LAYOUT` map.
pub(super) fn record_layout(ebpf: &mut Ebpf) -> Result<(), DataplaneError> {
    let map = ebpf
        .map_mut(names::LAYOUT)
        .ok_or_else(|| tables::TableError::Missing { name: names::LAYOUT, detail: "not in the eBPF object".into() })?;
    let mut layout: Array<&mut MapData, u32> = map.try_into().map_err(tables::map_err(names::LAYOUT))?;
    layout.set(1, LAYOUT_READABLE_BY, 0).map_err(tables::map_err(names::LAYOUT))?;
    layout.set(0, LAYOUT_VERSION, 0).map_err(tables::map_err(names::LAYOUT))?;
    Ok(())
}

/// The configured limits with every map-sized one replaced by the loaded map's size (the
/// first pinned map each limit sizes, from the layout table).
pub(super) fn effective_limits(ebpf: &Ebpf, configured: &Limits) -> Limits {
    let size = |sizing: Sizing, fallback: u32| {
        let Some(spec) = viking_common::layout::sized_by(sizing) else {
            return fallback;
        };
        let data = match ebpf.map(spec.name) {
            Some(Map::Array(data) | Map::HashMap(data) | Map::LruHashMap(data) | Map::PerCpuArray(data)) => data,
            _ => return fallback,
        };
        data.info().map_or(fallback, |info| info.max_entries())
    };
    Limits {
        max_services: size(Sizing::Services, configured.max_services),
        max_backends: size(Sizing::Backends, configured.max_backends),
        max_backends_per_service: configured.max_backends_per_service,
        max_service_slots: size(Sizing::ServiceSlots, configured.max_service_slots),
        max_rev_nat: size(Sizing::RevNat, configured.max_rev_nat),
        max_affinity: size(Sizing::Affinity, configured.max_affinity),
        max_recent_sockets: size(Sizing::RecentSockets, configured.max_recent_sockets),
    }
}

/// Checks an existing pin against the layout this agent needs. Returns whether it exists.
pub(super) fn check_pinned_map(
    path: &Path,
    spec: &viking_common::layout::MapSpec,
    limits: &Limits,
) -> Result<bool, DataplaneError> {
    if !path.exists() {
        return Ok(false);
    }
    let info = MapInfo::from_pin(path)
        .map_err(|err| DataplaneError::PinDir { path: path.into(), source: std::io::Error::other(err) })?;
    let mismatch = |what, found, expected| DataplaneError::IncompatiblePin { path: path.into(), what, found, expected };
    if info.key_size() != spec.key_size {
        return Err(mismatch("key size", info.key_size(), spec.key_size));
    }
    if info.value_size() != spec.value_size {
        return Err(mismatch("value size", info.value_size(), spec.value_size));
    }
    let wanted = layout::max_entries(spec, limits).unwrap_or(info.max_entries());
    if info.max_entries() != wanted {
        tracing::warn!(
            map = spec.name,
            pinned = info.max_entries(),
            configured = wanted,
            "pinned map keeps its size; the configured limit applies after `viking-agent uninstall`"
        );
    }
    Ok(true)
}
