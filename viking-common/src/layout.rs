//! The pinned layout as one table: every map the agent pins, with its key and value sizes
//! and what sizes it. The kernel crate declares the maps (`viking-ebpf/src/maps.rs`); the
//! agent derives its pin checks and effective limits from this table, and a test parses
//! the built object and checks it against the table, so a mismatch fails without root.

use core::mem::size_of;

use crate::{
    AffinityKey, AffinityValue, AllowKey, Backend, BackendHealth, BackendStats, CgroupPolicy, ContainerScope,
    MonitorSettings, OutlierPolicy, OverlayKey, OverlayTarget, RevNatKey, RevNatValue, ServiceKey, ServiceName,
    ServiceStats, ServiceValue, Settings, SocketRecord, SocketState, UnknownContainerStats, names,
};

/// What decides a map's number of entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sizing {
    /// `limits.max_services`.
    Services,
    /// `limits.max_backends`.
    Backends,
    /// `limits.max_service_slots`.
    ServiceSlots,
    /// `limits.max_rev_nat`.
    RevNat,
    /// `limits.max_affinity`.
    Affinity,
    /// `limits.max_recent_sockets`.
    RecentSockets,
    /// A fixed number of entries.
    Fixed(u32),
    /// The kernel's (socket storage: an entry per socket).
    Kernel,
}

/// One pinned map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapSpec {
    /// Its name in the object, and its file name under `<pin-dir>/maps/`.
    pub name: &'static str,
    /// Key size in bytes.
    pub key_size: u32,
    /// Value size in bytes.
    pub value_size: u32,
    /// What sizes it.
    pub sizing: Sizing,
}

const fn spec<K, V>(name: &'static str, sizing: Sizing) -> MapSpec {
    MapSpec { name, key_size: size_of::<K>() as u32, value_size: size_of::<V>() as u32, sizing }
}

/// Every pinned map. (The audit ring buffer and aya-log's buffer are per program instance
/// and not pinned; the connect monitor's is, so that `viking-agent monitor` can read it.)
pub const PINNED_MAPS: [MapSpec; 22] = [
    spec::<u32, u32>(names::LAYOUT, Sizing::Fixed(2)),
    spec::<ServiceKey, ServiceValue>(names::SERVICES, Sizing::ServiceSlots),
    spec::<u32, Backend>(names::BACKENDS, Sizing::Backends),
    spec::<u32, u64>(names::RR_CURSORS, Sizing::Services),
    spec::<u32, ServiceStats>(names::SERVICE_STATS, Sizing::Services),
    spec::<u32, ServiceName>(names::SERVICE_NAMES, Sizing::Services),
    spec::<u32, BackendStats>(names::BACKEND_STATS, Sizing::Backends),
    spec::<u32, u64>(names::BACKEND_ACTIVE, Sizing::Backends),
    spec::<u32, OutlierPolicy>(names::OUTLIER_POLICY, Sizing::Services),
    spec::<u32, BackendHealth>(names::BACKEND_HEALTH, Sizing::Backends),
    // Socket storage: the key is a socket fd (an int); entries live and die with sockets.
    spec::<i32, SocketState>(names::SOCKETS, Sizing::Kernel),
    spec::<u32, SocketRecord>(names::RECENT_SOCKETS, Sizing::RecentSockets),
    spec::<RevNatKey, RevNatValue>(names::REV_NAT, Sizing::RevNat),
    spec::<AffinityKey, AffinityValue>(names::AFFINITY, Sizing::Affinity),
    spec::<u64, CgroupPolicy>(names::CGROUP_POLICY, Sizing::Fixed(crate::limits::MAX_CGROUPS)),
    spec::<AllowKey, u8>(names::ALLOWED, Sizing::Fixed(crate::limits::MAX_DECLARATIONS)),
    spec::<OverlayKey, OverlayTarget>(names::OVERLAYS, Sizing::Fixed(crate::limits::MAX_DECLARATIONS)),
    spec::<u32, Settings>(names::SETTINGS, Sizing::Fixed(1)),
    spec::<u32, ContainerScope>(names::CONTAINER_SCOPE, Sizing::Fixed(1)),
    spec::<u32, UnknownContainerStats>(names::UNKNOWN_CONTAINERS, Sizing::Fixed(1)),
    spec::<u32, MonitorSettings>(names::MONITOR, Sizing::Fixed(1)),
    // A ring buffer: no key or value, its size is in bytes.
    MapSpec { name: names::CONNECT_EVENTS, key_size: 0, value_size: 0, sizing: Sizing::Fixed(CONNECT_EVENTS_BYTES) },
];

/// Size of the `CONNECT_EVENTS` ring buffer in bytes (a power of two).
pub const CONNECT_EVENTS_BYTES: u32 = 256 * 1024;

/// The first pinned map sized by `sizing` (what the loaded size of that limit is read from).
pub fn sized_by(sizing: Sizing) -> Option<&'static MapSpec> {
    PINNED_MAPS.iter().find(|spec| spec.sizing == sizing)
}
