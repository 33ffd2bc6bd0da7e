//! What the dataplane consists of: the pinned maps with their expected layouts, and the
//! programs with the hooks they attach to.

use std::mem::size_of;

use viking_common::{
    AffinityKey, AffinityValue, AllowKey, Backend, BackendHealth, BackendStats, CgroupPolicy, ContainerScope,
    OutlierPolicy, OverlayKey, OverlayTarget, RevNatKey, RevNatValue, ServiceKey, ServiceName, ServiceStats,
    ServiceValue, Settings, SocketRecord, SocketState, UnknownContainerStats, limits, names,
};

use crate::config::Limits;

/// A map the agent pins and adopts across restarts.
#[derive(Debug)]
pub struct PinnedMapSpec {
    /// Map name in the object and file name under `<pin-dir>/maps/`.
    pub name: &'static str,
    /// Expected key size; a pinned map with another layout is refused.
    pub key_size: u32,
    /// Expected value size.
    pub value_size: u32,
    /// Entries, from the configured limits; `None` for maps whose size the kernel decides
    /// (socket storage).
    pub max_entries: Option<fn(&Limits) -> u32>,
}

const fn spec<K, V>(name: &'static str, max_entries: Option<fn(&Limits) -> u32>) -> PinnedMapSpec {
    PinnedMapSpec { name, key_size: size_of::<K>() as u32, value_size: size_of::<V>() as u32, max_entries }
}

/// Every pinned map. (The log ring buffer is per program instance and not pinned.)
pub const PINNED_MAPS: [PinnedMapSpec; 20] = [
    spec::<u32, u32>(names::LAYOUT, Some(|_| 1)),
    spec::<ServiceKey, ServiceValue>(names::SERVICES, Some(|l| l.max_service_slots)),
    spec::<u32, Backend>(names::BACKENDS, Some(|l| l.max_backends)),
    spec::<u32, u64>(names::RR_CURSORS, Some(|l| l.max_services)),
    spec::<u32, ServiceStats>(names::SERVICE_STATS, Some(|l| l.max_services)),
    spec::<u32, ServiceName>(names::SERVICE_NAMES, Some(|l| l.max_services)),
    spec::<u32, BackendStats>(names::BACKEND_STATS, Some(|l| l.max_backends)),
    spec::<u32, u64>(names::BACKEND_ACTIVE, Some(|l| l.max_backends)),
    spec::<u32, OutlierPolicy>(names::OUTLIER_POLICY, Some(|l| l.max_services)),
    spec::<u32, BackendHealth>(names::BACKEND_HEALTH, Some(|l| l.max_backends)),
    // Socket storage: key is the socket fd (an int); entries live and die with sockets.
    spec::<i32, SocketState>(names::SOCKETS, None),
    spec::<u32, SocketRecord>(names::RECENT_SOCKETS, Some(|l| l.max_recent_sockets)),
    spec::<RevNatKey, RevNatValue>(names::REV_NAT, Some(|l| l.max_rev_nat)),
    spec::<AffinityKey, AffinityValue>(names::AFFINITY, Some(|l| l.max_affinity)),
    spec::<u64, CgroupPolicy>(names::CGROUP_POLICY, Some(|_| limits::MAX_CGROUPS)),
    spec::<AllowKey, u8>(names::ALLOWED, Some(|_| limits::MAX_DECLARATIONS)),
    spec::<OverlayKey, OverlayTarget>(names::OVERLAYS, Some(|_| limits::MAX_DECLARATIONS)),
    spec::<u32, Settings>(names::SETTINGS, Some(|_| 1)),
    spec::<u32, ContainerScope>(names::CONTAINER_SCOPE, Some(|_| 1)),
    spec::<u32, UnknownContainerStats>(names::UNKNOWN_CONTAINERS, Some(|_| 1)),
];

/// The program type of a cgroup hook. (The exact attach point, e.g. `connect4`, comes
/// from the program's ELF section.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookKind {
    /// `cgroup/<connect|sendmsg|recvmsg|getpeername><4|6>`: socket address hooks.
    SockAddr,
    /// `cgroup/sock_release`: socket hooks.
    Sock,
    /// `sockops`: TCP events of the cgroup's sockets.
    SockOps,
}

/// A program and the kind of cgroup hook it attaches to.
#[derive(Debug)]
pub struct Hook {
    /// Program name in the object and file name under `<pin-dir>/links/`.
    pub program: &'static str,
    /// Its program type.
    pub kind: HookKind,
}

const fn sock_addr(program: &'static str) -> Hook {
    Hook { program, kind: HookKind::SockAddr }
}

/// Every program, in attach order: the release hook first, so no counted connection can
/// be released unseen; the outcome observer, so every redirected connect's end is seen;
/// then the translations back (replies, peer names) before the translations forward, so
/// every redirected socket finds its reverse path in place.
pub const HOOKS: [Hook; 10] = [
    Hook { program: names::PROG_SOCK_RELEASE, kind: HookKind::Sock },
    Hook { program: names::PROG_SOCK_OPS, kind: HookKind::SockOps },
    sock_addr(names::PROG_GETPEERNAME4),
    sock_addr(names::PROG_GETPEERNAME6),
    sock_addr(names::PROG_RECVMSG4),
    sock_addr(names::PROG_RECVMSG6),
    sock_addr(names::PROG_SENDMSG4),
    sock_addr(names::PROG_SENDMSG6),
    sock_addr(names::PROG_CONNECT4),
    sock_addr(names::PROG_CONNECT6),
];
