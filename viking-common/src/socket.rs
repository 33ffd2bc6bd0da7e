//! Per-socket and per-client state kept by the kernel programs.

use crate::Ip6;

/// What `connect` did to a socket: in `RECENT_SOCKETS` for every redirected socket, and in
/// the `SOCKETS` socket storage (freed by the kernel with the socket) for sockets counted
/// by `least_conn` and sockets whose peer name was asked for.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SocketState {
    /// The VIP the application connected to (what `getpeername` must return).
    pub vip: Ip6,
    /// The backend the connect was sent to.
    pub backend: Ip6,
    /// The VIP's port, network byte order.
    pub vip_port_be: u16,
    /// The backend's port, network byte order.
    pub backend_port_be: u16,
    /// [`SocketState::COUNTED`] when the socket holds one of `BACKEND_ACTIVE[backend_id]`.
    pub flags: u32,
    /// The backend's id.
    pub backend_id: u32,
}

impl SocketState {
    /// The socket is counted in `BACKEND_ACTIVE` and must be uncounted on release.
    pub const COUNTED: u32 = 1;
}

/// Value of the `RECENT_SOCKETS` array: the translation of a recently redirected socket,
/// at index `cookie % size`. Valid while `cookie` matches; a later socket with the same
/// index overwrites it (a direct-mapped table: one array write per connect, no allocation).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SocketRecord {
    /// `bpf_get_socket_cookie` of the socket; 0 = empty.
    pub cookie: u64,
    /// What connect did.
    pub state: SocketState,
    /// Explicit padding, always 0.
    pub _pad: u32,
}

/// Key of the `REV_NAT` LRU: an unconnected UDP socket (by cookie) and a backend it sent to.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RevNatKey {
    /// `bpf_get_socket_cookie` of the socket.
    pub cookie: u64,
    /// The backend address.
    pub backend: Ip6,
    /// The backend port, network byte order.
    pub backend_port_be: u16,
    /// Explicit padding, always 0.
    pub _pad: [u8; 6],
}

/// Value of the `REV_NAT` LRU: the VIP replies from that backend must appear to come from.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RevNatValue {
    /// The VIP.
    pub vip: Ip6,
    /// The VIP's port, network byte order.
    pub vip_port_be: u16,
    /// Explicit padding, always 0.
    pub _pad: u16,
}

/// Key of the `AFFINITY` LRU: a client (its cgroup) and a service.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AffinityKey {
    /// `bpf_get_current_cgroup_id` of the connecting process.
    pub client_cgroup: u64,
    /// The service.
    pub service_id: u32,
    /// Explicit padding, always 0.
    pub _pad: u32,
}

/// Value of the `AFFINITY` LRU: the backend a client last used and when.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AffinityValue {
    /// The backend.
    pub backend_id: u32,
    /// Explicit padding, always 0.
    pub _pad: u32,
    /// `bpf_ktime_get_ns` of the last connect that used it.
    pub last_used_ns: u64,
}
