//! Per-container policy and port overlays, keyed by the cgroup id of the connecting
//! process (each Docker/Nomad container has its own cgroup).

use crate::Ip6;

/// What the kernel does with a container's connects to VIPs.
#[repr(u8)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PolicyMode {
    /// No check (also the meaning of a cgroup without an entry, unless it lies below the
    /// backstop's parent cgroup: see [`ContainerScope`]).
    #[default]
    Off = 0,
    /// Undeclared VIP connects are allowed and reported.
    Audit = 1,
    /// Undeclared VIP connects are refused (`EACCES`) and reported.
    Enforce = 2,
    /// VIPs are not translated at all for this cgroup (a service mesh or sandbox that
    /// rewrites connects itself).
    Bypass = 3,
}

impl PolicyMode {
    /// Decodes [`CgroupPolicy::mode`]; unknown values mean `Off`.
    #[inline(always)]
    pub const fn from_u8(value: u8) -> Self {
        match value {
            1 => Self::Audit,
            2 => Self::Enforce,
            3 => Self::Bypass,
            _ => Self::Off,
        }
    }

    /// How strict the mode is: `bypass` < `off` < `audit` < `enforce`.
    pub const fn strictness(self) -> u8 {
        match self {
            Self::Bypass => 0,
            Self::Off => 1,
            Self::Audit => 2,
            Self::Enforce => 3,
        }
    }

    /// The name used in config, labels and logs.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Audit => "audit",
            Self::Enforce => "enforce",
            Self::Bypass => "bypass",
        }
    }
}

/// Serialized by its [name](PolicyMode::name), as in config and labels.
#[cfg(feature = "user")]
impl serde::Serialize for PolicyMode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

/// Value of the `CGROUP_POLICY` map (key: cgroup id).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CgroupPolicy {
    /// A [`PolicyMode`] as `u8`.
    pub mode: u8,
    /// Explicit padding, always 0.
    pub _pad: [u8; 7],
}

/// Key of the `ALLOWED` map: a container may connect to every port of this VIP.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AllowKey {
    /// The container's cgroup id.
    pub cgroup_id: u64,
    /// The declared service's VIP.
    pub vip: Ip6,
}

/// Key of the `OVERLAYS` map: a container's connect to the ambassador address on `port`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OverlayKey {
    /// The container's cgroup id.
    pub cgroup_id: u64,
    /// The port on the ambassador address, network byte order.
    pub port_be: u16,
    /// `IPPROTO_TCP` or `IPPROTO_UDP`.
    pub protocol: u8,
    /// Explicit padding, always 0.
    pub _pad: [u8; 5],
}

/// Value of the `OVERLAYS` map: the service frontend the connect is for.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OverlayTarget {
    /// The service's VIP.
    pub vip: Ip6,
    /// The service's port, network byte order.
    pub port_be: u16,
    /// Explicit padding, always 0.
    pub _pad: u16,
}

/// Value of the one-entry `SETTINGS` array: host-wide settings the programs read.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// The ambassador address of port overlays (v4-mapped for IPv4); all zero = none.
    pub ambassador: Ip6,
    /// [`Settings::POLICY_ACTIVE`] when some cgroup has a policy or a backstop is set:
    /// otherwise the programs skip the per-cgroup lookup on every VIP connect.
    pub flags: u32,
    /// Entries of `RECENT_SOCKETS` (its `max_entries`, chosen by the agent at load time).
    pub recent_sockets: u32,
}

impl Settings {
    /// `CGROUP_POLICY` has at least one entry, or `CONTAINER_SCOPE` a backstop.
    pub const POLICY_ACTIVE: u32 = 1;
}

/// A record of the `AUDIT_EVENTS` ring buffer: a connect to a VIP the container did not
/// declare.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AuditEvent {
    /// The connecting process's cgroup id.
    pub cgroup_id: u64,
    /// The VIP.
    pub vip: Ip6,
    /// The VIP's port, network byte order.
    pub port_be: u16,
    /// `IPPROTO_TCP` or `IPPROTO_UDP`.
    pub protocol: u8,
    /// The [`PolicyMode`] that applied (audit: allowed; enforce: refused).
    pub mode: u8,
    /// [`AuditEvent::UNKNOWN_CONTAINER`] or 0.
    pub flags: u32,
}

impl AuditEvent {
    /// The cgroup had no entry of its own: the mode is the [`ContainerScope`]'s.
    pub const UNKNOWN_CONTAINER: u32 = 1;
}

/// Value of the one-entry `CONTAINER_SCOPE` array: the cgroup below which every cgroup is
/// a container (the container runtime's cgroup parent), and the mode of such a cgroup
/// that has no `CGROUP_POLICY` entry yet. This is the backstop that closes the window
/// between a container's first instruction and the agent writing its entry.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ContainerScope {
    /// Cgroup id of the runtime's parent cgroup; 0 = no backstop.
    pub parent_cgroup_id: u64,
    /// Its level in the cgroup v2 hierarchy (the root is level 0), as
    /// `bpf_get_current_ancestor_cgroup_id` counts.
    pub parent_level: u32,
    /// A [`PolicyMode`] as `u8`: what applies to a cgroup below the parent without an entry.
    pub mode: u8,
    /// Explicit padding, always 0.
    pub _pad: [u8; 3],
}

/// Value of the one-entry per-CPU `UNKNOWN_CONTAINERS` array: VIP connects from cgroups
/// below the [`ContainerScope`] parent that had no entry yet.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UnknownContainerStats {
    /// Refused (the scope's mode was `enforce`).
    pub refused: u64,
    /// Allowed and reported (the scope's mode was `audit`).
    pub audited: u64,
}
