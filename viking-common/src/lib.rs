//! Types and names shared by the kernel programs (`viking-ebpf`) and the agent.
//!
//! Every type here is `#[repr(C)]`, `Copy`, has explicit padding, and is the exact layout of
//! a BPF map key or value. Changing a layout is a breaking change for pinned maps: the agent
//! checks key and value sizes when it adopts pinned maps and refuses mismatches.
//!
//! Byte order: addresses and ports are kept in **network byte order**, exactly as the kernel
//! hands them to `cgroup/connect4` in `bpf_sock_addr`, so the hot path never converts.
#![cfg_attr(not(any(test, feature = "std")), no_std)]

mod address;
mod backend;
#[cfg(feature = "std")]
pub mod cgroup2;
pub mod layout;
mod monitor;
pub mod names;
mod outlier;
mod policy;
mod service;
mod socket;
mod stats;

pub use address::Ip6;
pub use backend::Backend;
pub use monitor::{ConnectEvent, MonitorSettings, Verdict};
pub use outlier::{BackendHealth, OutlierPolicy};
pub use policy::{
    AllowKey, AuditEvent, CgroupPolicy, ContainerScope, OverlayKey, OverlayTarget, PolicyMode, Settings,
    UnknownContainerStats,
};
pub use service::{Algorithm, INLINE_SLOTS, ServiceKey, ServiceName, ServiceValue};
pub use socket::{AffinityKey, AffinityValue, RevNatKey, RevNatValue, SocketRecord, SocketState};
pub use stats::{BackendStats, ServiceStats};

/// The layout of the pinned maps and links this build creates, kept in the `LAYOUT` map
/// with [`LAYOUT_READABLE_BY`]. An agent adopts pins of its own layout or an older one
/// (upgrading them), and pins of a newer one that its layout can still use; it refuses
/// the others before it touches anything.
///
/// - 1: the first pinned layout (17 maps, 9 programs); it had no `LAYOUT` map.
/// - 2: outlier ejection (`OUTLIER_POLICY`, `BACKEND_HEALTH`, the `sockops` program), the
///   connect monitor (`MONITOR`, `CONNECT_EVENTS`) and `LAYOUT` added. Every map of
///   layout 1 is unchanged.
pub const LAYOUT_VERSION: u32 = 2;

/// The oldest layout whose agents can use pins of [`LAYOUT_VERSION`]: 1, because layout 2
/// only added maps and a program, which a layout-1 agent leaves alone. A layout that
/// changes a map an older agent uses raises it.
pub const LAYOUT_READABLE_BY: u32 = 1;

/// IP protocol number of TCP, as in `bpf_sock_addr.protocol` and `ServiceKey::protocol`.
pub const IPPROTO_TCP: u8 = 6;
/// IP protocol number of UDP, as in `bpf_sock_addr.protocol` and `ServiceKey::protocol`.
pub const IPPROTO_UDP: u8 = 17;

/// Default upper bounds of the kernel maps. The agent can raise or lower them at load time
/// (`[limits]` in the config); map creation uses the agent's values, not these.
pub mod limits {
    /// Frontends (`vip:port/protocol`) the kernel can hold: size of the per-service arrays.
    pub const MAX_SERVICES: u32 = 65_536;
    /// Distinct backend addresses: size of the `BACKENDS` array.
    pub const MAX_BACKENDS: u32 = 65_536;
    /// Entries of the `SERVICES` hash: one per service plus one per backend slot.
    pub const MAX_SERVICE_SLOTS: u32 = 1_048_576;
    /// Backend slots a single service may use.
    pub const MAX_BACKENDS_PER_SERVICE: u16 = 1_024;
    /// Entries of the `RECENT_SOCKETS` table: a redirected socket's translation stays there
    /// until this many later sockets took its place (then only its socket storage, created
    /// when it first asked for its peer name, remains).
    pub const MAX_RECENT_SOCKETS: u32 = 262_144;
    /// Entries of the `REV_NAT` LRU (unconnected UDP flows: socket x backend).
    pub const MAX_REV_NAT: u32 = 262_144;
    /// Entries of the `AFFINITY` LRU (client cgroup x service).
    pub const MAX_AFFINITY: u32 = 65_536;
    /// Containers with a policy or overlays (entries of `CGROUP_POLICY`).
    pub const MAX_CGROUPS: u32 = 16_384;
    /// Declared (container, VIP) pairs, and likewise overlay entries.
    pub const MAX_DECLARATIONS: u32 = 262_144;
    /// Slots `least_conn` compares per connect; larger services are scanned through a
    /// window of this many slots from a random start.
    pub const LEAST_CONN_SCAN: u32 = 64;
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: every type is `#[repr(C)]`, `Copy`, made of integers only, with its padding
    // spelled out as fields, so any bit pattern is a valid value and no byte is undefined.
    unsafe impl aya::Pod for super::ServiceKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::ServiceValue {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Backend {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::ServiceStats {}
    // SAFETY: as above (a byte array).
    unsafe impl aya::Pod for super::ServiceName {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::BackendStats {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::SocketRecord {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::AffinityKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::AffinityValue {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::CgroupPolicy {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::AllowKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::OverlayKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::OverlayTarget {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Settings {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::ContainerScope {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::UnknownContainerStats {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::OutlierPolicy {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::BackendHealth {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::MonitorSettings {}
}

#[cfg(test)]
mod layout_tests {
    use core::mem::size_of;

    use super::*;

    /// The map layouts are an ABI between the kernel object, pinned maps and the agent.
    #[test]
    fn map_types_have_the_documented_sizes() {
        assert_eq!(size_of::<Ip6>(), 16);
        assert_eq!(size_of::<ServiceKey>(), 24);
        assert_eq!(size_of::<ServiceValue>(), 32);
        assert_eq!(size_of::<Backend>(), 20);
        assert_eq!(size_of::<ServiceStats>(), 24);
        assert_eq!(size_of::<ServiceName>(), 64);
        assert_eq!(size_of::<BackendStats>(), 8);
        assert_eq!(size_of::<SocketState>(), 44);
        assert_eq!(size_of::<SocketRecord>(), 56);
        assert_eq!(size_of::<RevNatKey>(), 32);
        assert_eq!(size_of::<RevNatValue>(), 20);
        assert_eq!(size_of::<AffinityKey>(), 16);
        assert_eq!(size_of::<AffinityValue>(), 16);
        assert_eq!(size_of::<CgroupPolicy>(), 8);
        assert_eq!(size_of::<AllowKey>(), 24);
        assert_eq!(size_of::<OverlayKey>(), 16);
        assert_eq!(size_of::<OverlayTarget>(), 20);
        assert_eq!(size_of::<Settings>(), 24);
        assert_eq!(size_of::<AuditEvent>(), 32);
        assert_eq!(size_of::<ContainerScope>(), 16);
        assert_eq!(size_of::<UnknownContainerStats>(), 16);
        assert_eq!(size_of::<OutlierPolicy>(), 12);
        assert_eq!(size_of::<BackendHealth>(), 56);
        assert_eq!(size_of::<MonitorSettings>(), 8);
        assert_eq!(size_of::<ConnectEvent>(), 56);
    }
}
