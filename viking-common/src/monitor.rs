//! `viking-agent monitor`: a live stream of connect decisions from the kernel, off until
//! someone watches.

use crate::Ip6;

/// Value of the one-entry `MONITOR` array: one connect in `sample_every` is reported to
/// `CONNECT_EVENTS`; 0 = off (the connect path then costs one array read).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MonitorSettings {
    /// 0: off; 1: every connect; N: one in N, chosen at random.
    pub sample_every: u32,
    /// Explicit padding, always 0.
    pub _pad: u32,
}

/// What connect did with a VIP destination.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Sent to a backend.
    Redirected = 0,
    /// Refused: the service has no backend (`ECONNREFUSED`).
    NoBackend = 1,
    /// Refused: the container did not declare the service (`EACCES`).
    Policy = 2,
    /// Refused: the backend's address family does not fit the socket (`EAFNOSUPPORT`).
    FamilyMismatch = 3,
}

impl Verdict {
    /// Decodes [`ConnectEvent::verdict`].
    pub const fn from_u8(value: u8) -> Option<Self> {
        match value {
            0 => Some(Self::Redirected),
            1 => Some(Self::NoBackend),
            2 => Some(Self::Policy),
            3 => Some(Self::FamilyMismatch),
            _ => None,
        }
    }

    /// Its name in `monitor`'s output.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Redirected => "redirected",
            Self::NoBackend => "refused (no backend)",
            Self::Policy => "refused (policy)",
            Self::FamilyMismatch => "refused (address family)",
        }
    }
}

/// A record of the `CONNECT_EVENTS` ring buffer: one connect to a VIP and its verdict.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnectEvent {
    /// The connecting process's cgroup id.
    pub cgroup_id: u64,
    /// The address the application connected to (a VIP, or the ambassador address).
    pub vip: Ip6,
    /// The backend it was sent to (redirected only).
    pub backend: Ip6,
    /// The requested port, network byte order.
    pub port_be: u16,
    /// The backend's port, network byte order (redirected only).
    pub backend_port_be: u16,
    /// `IPPROTO_TCP` or `IPPROTO_UDP`.
    pub protocol: u8,
    /// A [`Verdict`] as `u8`.
    pub verdict: u8,
    /// Explicit padding, always 0.
    pub _pad0: [u8; 2],
    /// The backend's id (redirected only).
    pub backend_id: u32,
    /// Explicit padding, always 0.
    pub _pad1: u32,
}
