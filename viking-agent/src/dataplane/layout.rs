//! What the dataplane consists of: the pinned maps with their expected layouts, and the
//! programs with the hooks they attach to.

use std::mem::size_of;

use aya::programs::CgroupSockAddrAttachType;
use viking_common::{Backend, ServiceKey, ServiceName, ServiceStats, ServiceValue, names};

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
    /// Entries, from the configured limits.
    pub max_entries: fn(&Limits) -> u32,
}

/// Every pinned map. (The log ring buffer is per program instance and not pinned.)
pub const PINNED_MAPS: [PinnedMapSpec; 5] = [
    PinnedMapSpec {
        name: names::SERVICES,
        key_size: size_of::<ServiceKey>() as u32,
        value_size: size_of::<ServiceValue>() as u32,
        max_entries: |l| l.max_service_slots,
    },
    PinnedMapSpec {
        name: names::BACKENDS,
        key_size: size_of::<u32>() as u32,
        value_size: size_of::<Backend>() as u32,
        max_entries: |l| l.max_backends,
    },
    PinnedMapSpec {
        name: names::RR_CURSORS,
        key_size: size_of::<u32>() as u32,
        value_size: size_of::<u32>() as u32,
        max_entries: |l| l.max_services,
    },
    PinnedMapSpec {
        name: names::SERVICE_STATS,
        key_size: size_of::<u32>() as u32,
        value_size: size_of::<ServiceStats>() as u32,
        max_entries: |l| l.max_services,
    },
    PinnedMapSpec {
        name: names::SERVICE_NAMES,
        key_size: size_of::<u32>() as u32,
        value_size: size_of::<ServiceName>() as u32,
        max_entries: |l| l.max_services,
    },
];

/// A program and the cgroup hook it attaches to.
#[derive(Debug)]
pub struct Hook {
    /// Program name in the object and file name under `<pin-dir>/links/`.
    pub program: &'static str,
    /// The `cgroup/sock_addr` attach point.
    pub attach_type: CgroupSockAddrAttachType,
}

/// Every program, in attach order.
pub const HOOKS: [Hook; 1] =
    [Hook { program: names::PROG_CONNECT4, attach_type: CgroupSockAddrAttachType::Connect4 }];
