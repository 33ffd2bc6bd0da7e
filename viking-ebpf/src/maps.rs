//! Every map of the kernel side, in one place.
//!
//! Sizes here are defaults; the agent sets the real `max_entries` at load time from its
//! `[limits]` config (`EbpfLoader::map_max_entries`). All maps are pinned by the agent
//! under `<pin-dir>/maps/<NAME>` so they outlive agent restarts. The pinned ones are listed
//! with their key and value sizes in `viking_common::layout::PINNED_MAPS`; a test parses the
//! built object and checks it against that table.

use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    btf_maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf, SkStorage},
    macros::btf_map,
};
use viking_common::{
    AffinityKey, AffinityValue, AllowKey, AuditEvent, Backend, BackendHealth, BackendStats, CgroupPolicy, ConnectEvent,
    ContainerScope, MonitorSettings, OutlierPolicy, OverlayKey, OverlayTarget, RevNatKey, RevNatValue, ServiceKey,
    ServiceName, ServiceStats, ServiceValue, Settings, SocketRecord, SocketState, UnknownContainerStats, limits,
};

/// Frontends and their backend slots.
/// - key: [`ServiceKey`] (`vip`, `port`, `protocol`, `slot`)
/// - value: [`ServiceValue`]; slot 0 = service entry (count, algorithm, id, copy of the first
///   backend ids), slot n = backend id
/// - writer: agent reconciler (slots before slot 0 publishes them; count before deletions)
/// - reader: connect4/6, sendmsg4/6
/// - size: `limits.max_service_slots` (one entry per service + one per backend slot);
///   allocated on demand (`BPF_F_NO_PREALLOC`), so a large limit costs no memory up front.
#[btf_map(name = "VIKING_SERVICES")]
pub static SERVICES: HashMap<
    ServiceKey,
    ServiceValue,
    { limits::MAX_SERVICE_SLOTS as usize },
    { BPF_F_NO_PREALLOC as usize },
> = HashMap::new();

/// Backend addresses.
/// - key: backend id (`u32`); value: [`Backend`] (all zero = unused id)
/// - writer: agent reconciler (written before any slot names it, cleared after none does)
/// - reader: connect4/6, sendmsg4/6
/// - size: `limits.max_backends` distinct backends; an array, so lookups are a bounds check
#[btf_map(name = "VIKING_BACKENDS")]
pub static BACKENDS: Array<Backend, { limits::MAX_BACKENDS as usize }> = Array::new();

/// Round-robin cursor per service.
/// - key: service id; value: next turn (`u64`, atomic fetch-add, wraps)
/// - writer and reader: connect4/6 (round_robin and weighted services); never the agent
/// - size: `limits.max_services`
#[btf_map(name = "VIKING_RR_CURSORS")]
pub static RR_CURSORS: Array<u64, { limits::MAX_SERVICES as usize }> = Array::new();

/// Per-service counters, per CPU (no atomics on the hot path).
/// - key: service id; value: [`ServiceStats`]
/// - writer: connect4/6, sendmsg4/6; reader: agent (`maps dump` sums over CPUs); the agent
///   zeroes an id when it assigns it to a new service
/// - size: `limits.max_services`
#[btf_map(name = "VIKING_SERVICE_STATS")]
pub static SERVICE_STATS: PerCpuArray<ServiceStats, { limits::MAX_SERVICES as usize }> = PerCpuArray::new();

/// Per-backend counters, per CPU.
/// - key: backend id; value: [`BackendStats`]
/// - writer: connect4/6, sendmsg4/6; reader: agent; zeroed by the agent when it assigns the id
/// - size: `limits.max_backends`
#[btf_map(name = "VIKING_BACKEND_STATS")]
pub static BACKEND_STATS: PerCpuArray<BackendStats, { limits::MAX_BACKENDS as usize }> = PerCpuArray::new();

/// Open connections per backend, counted for `least_conn` services.
/// - key: backend id; value: `u64` (atomic add on connect, atomic subtract on release)
/// - writer: connect4/6 (+1), sock_release (-1); reader: connect4/6 (least_conn), agent
/// - size: `limits.max_backends`
#[btf_map(name = "VIKING_BACKEND_ACTIVE")]
pub static BACKEND_ACTIVE: Array<u64, { limits::MAX_BACKENDS as usize }> = Array::new();

/// When a service's failing backends are ejected.
/// - key: service id; value: [`OutlierPolicy`] (all zero = never)
/// - writer: agent reconciler (with the service entry); reader: sock_ops when a connect fails
/// - size: `limits.max_services`
#[btf_map(name = "VIKING_OUTLIER_POLICY")]
pub static OUTLIER_POLICY: Array<OutlierPolicy, { limits::MAX_SERVICES as usize }> = Array::new();

/// What the kernel has seen of each backend's TCP connects: failures in a row, ejection.
/// - key: backend id; value: [`BackendHealth`]
/// - writer: sock_ops (outcomes), connect4/6 (skips); reader: connect4/6, agent (`maps
///   dump`); zeroed by the agent when it assigns the id
/// - size: `limits.max_backends`
#[btf_map(name = "VIKING_BACKEND_HEALTH")]
pub static BACKEND_HEALTH: Array<BackendHealth, { limits::MAX_BACKENDS as usize }> = Array::new();

/// What connect did to recently redirected sockets, for getpeername and connected-UDP
/// replies: a direct-mapped table (one array write per connect; creating socket storage
/// costs ~750 ns per connect on this kernel, this ~10 ns).
/// - key: `cookie % size` (size in `SETTINGS.recent_sockets`); value: [`SocketRecord`],
///   valid while its cookie matches
/// - writer: connect4/6; reader: getpeername4/6, recvmsg4/6 (which promote the record to
///   `SOCKETS` so that it outlives later sockets)
/// - size: `limits.max_recent_sockets`
#[btf_map(name = "VIKING_RECENT_SOCKETS")]
pub static RECENT_SOCKETS: Array<SocketRecord, { limits::MAX_RECENT_SOCKETS as usize }> = Array::new();

/// Per-socket state that must live as long as the socket: sockets counted by `least_conn`
/// (so release can uncount them) and sockets that asked for their peer name.
/// - key: the socket; value: [`SocketState`]
/// - writer: connect4/6 (least_conn), getpeername4/6 and recvmsg4/6 (promotion); reader:
///   getpeername4/6, recvmsg4/6, sock_release
/// - size: one entry per such socket, freed by the kernel with the socket
#[btf_map(name = "VIKING_SOCKETS")]
pub static SOCKETS: SkStorage<SocketState> = SkStorage::new();

/// Reverse translation for unconnected UDP: replies from a backend to a socket that sent
/// to a VIP appear to come from the VIP.
/// - key: [`RevNatKey`] (socket cookie, backend); value: [`RevNatValue`] (VIP)
/// - writer: sendmsg4/6; reader: recvmsg4/6
/// - size: `limits.max_rev_nat`, least recently used entries are evicted
#[btf_map(name = "VIKING_REV_NAT")]
pub static REV_NAT: LruHashMap<RevNatKey, RevNatValue, { limits::MAX_REV_NAT as usize }> = LruHashMap::new();

/// Client affinity: the backend a client cgroup last used for a service.
/// - key: [`AffinityKey`]; value: [`AffinityValue`]
/// - writer: connect4/6, sendmsg4/6 (services with `affinity_secs > 0`); the agent deletes
///   entries naming a backend that left the service
/// - size: `limits.max_affinity`, least recently used entries are evicted
#[btf_map(name = "VIKING_AFFINITY")]
pub static AFFINITY: LruHashMap<AffinityKey, AffinityValue, { limits::MAX_AFFINITY as usize }> = LruHashMap::new();

/// Service names, for `maps dump` when no agent runs. No program reads it; it is declared
/// here so that it is created, sized and pinned with the others.
/// - key: service id; value: [`ServiceName`]
/// - writer and reader: agent
/// - size: `limits.max_services`, allocated on demand
#[btf_map(name = "VIKING_SERVICE_NAMES")]
pub static SERVICE_NAMES: HashMap<u32, ServiceName, { limits::MAX_SERVICES as usize }, { BPF_F_NO_PREALLOC as usize }> =
    HashMap::new();

/// The layout of the pins, for the next agent that adopts them. No program reads it.
/// - key 0: [`viking_common::LAYOUT_VERSION`]; key 1: [`viking_common::LAYOUT_READABLE_BY`]
/// - writer and reader: agent
#[btf_map(name = "VIKING_LAYOUT")]
pub static LAYOUT: Array<u32, 2> = Array::new();

/// Per-container policy mode.
/// - key: cgroup id (`u64`); value: [`CgroupPolicy`] (absent = off)
/// - writer: agent (containers source); reader: connect4/6, sendmsg4/6 after a VIP matched
/// - size: `limits::MAX_CGROUPS`
#[btf_map(name = "VIKING_CGROUP_POLICY")]
pub static CGROUP_POLICY: HashMap<u64, CgroupPolicy, { limits::MAX_CGROUPS as usize }, { BPF_F_NO_PREALLOC as usize }> =
    HashMap::new();

/// Declared dependencies: a container may connect to this VIP (every port).
/// - key: [`AllowKey`] (cgroup id, VIP); value: `u8` (1)
/// - writer: agent; reader: connect4/6, sendmsg4/6 for cgroups in audit/enforce mode
/// - size: `limits::MAX_DECLARATIONS`
#[btf_map(name = "VIKING_ALLOWED")]
pub static ALLOWED: HashMap<AllowKey, u8, { limits::MAX_DECLARATIONS as usize }, { BPF_F_NO_PREALLOC as usize }> =
    HashMap::new();

/// Port overlays (embassy's `BACKEND_<NAME>=<service>;<port>`): a container's connect to
/// the ambassador address on a port goes to a service.
/// - key: [`OverlayKey`] (cgroup id, port, protocol); value: [`OverlayTarget`] (frontend)
/// - writer: agent; reader: connect4/6, sendmsg4/6 when the destination is the ambassador
/// - size: `limits::MAX_DECLARATIONS`
#[btf_map(name = "VIKING_OVERLAYS")]
pub static OVERLAYS: HashMap<
    OverlayKey,
    OverlayTarget,
    { limits::MAX_DECLARATIONS as usize },
    { BPF_F_NO_PREALLOC as usize },
> = HashMap::new();

/// Host-wide settings, one entry.
/// - key: 0; value: [`Settings`] (ambassador address)
/// - writer: agent at start; reader: connect4/6, sendmsg4/6
#[btf_map(name = "VIKING_SETTINGS")]
pub static SETTINGS: Array<Settings, 1> = Array::new();

/// The backstop for containers the agent has not seen yet: every cgroup below the
/// container runtime's parent cgroup that has no `CGROUP_POLICY` entry gets this mode.
/// - key: 0; value: [`ContainerScope`] (parent cgroup id 0 = no backstop)
/// - writer: agent (containers source); reader: connect4/6, sendmsg4/6 after a VIP matched
///   and only for a cgroup without an entry
#[btf_map(name = "VIKING_CONTAINER_SCOPE")]
pub static CONTAINER_SCOPE: Array<ContainerScope, 1> = Array::new();

/// VIP connects from cgroups below the scope's parent that had no entry yet.
/// - key: 0; value: per-CPU [`UnknownContainerStats`]
/// - writer: connect4/6, sendmsg4/6; reader: agent (`maps dump`)
#[btf_map(name = "VIKING_UNKNOWN_CONTAINERS")]
pub static UNKNOWN_CONTAINERS: PerCpuArray<UnknownContainerStats, 1> = PerCpuArray::new();

/// Undeclared VIP connects of containers in audit or enforce mode.
/// - records: [`AuditEvent`]; writer: connect4/6, sendmsg4/6; reader: agent (logs them)
/// - size: 256 KiB; when the agent is not reading, new records are dropped
#[btf_map(name = "VIKING_AUDIT_EVENTS")]
pub static AUDIT_EVENTS: RingBuf<AuditEvent, { 256 * 1024 }> = RingBuf::new();

/// Whether connect decisions are reported, and how often.
/// - key: 0; value: [`MonitorSettings`] (`sample_every` 0 = off)
/// - writer: `viking-agent monitor` (on while it runs); reader: connect4/6
#[btf_map(name = "VIKING_MONITOR")]
pub static MONITOR: Array<MonitorSettings, 1> = Array::new();

/// Connect decisions while a monitor watches.
/// - records: [`ConnectEvent`]; writer: connect4/6; reader: `viking-agent monitor`
/// - size: `layout::CONNECT_EVENTS_BYTES`; when the monitor falls behind, records are dropped
#[btf_map(name = "VIKING_CONNECT_EVENTS")]
pub static CONNECT_EVENTS: RingBuf<ConnectEvent, { viking_common::layout::CONNECT_EVENTS_BYTES as usize }> =
    RingBuf::new();
