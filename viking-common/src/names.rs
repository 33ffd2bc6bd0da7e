//! Names of the maps and programs, shared by the kernel object and the agent, and used as
//! file names under the pin directory.

/// `SERVICES`: frontend slots -> service entry / backend ids.
pub const SERVICES: &str = "VIKING_SERVICES";
/// `BACKENDS`: backend id -> address.
pub const BACKENDS: &str = "VIKING_BACKENDS";
/// `RR_CURSORS`: service id -> round-robin cursor.
pub const RR_CURSORS: &str = "VIKING_RR_CURSORS";
/// `SERVICE_STATS`: service id -> per-CPU counters.
pub const SERVICE_STATS: &str = "VIKING_SERVICE_STATS";

/// `SERVICE_NAMES`: service id -> name (agent only).
pub const SERVICE_NAMES: &str = "VIKING_SERVICE_NAMES";

/// `BACKEND_STATS`: backend id -> per-CPU counters.
pub const BACKEND_STATS: &str = "VIKING_BACKEND_STATS";
/// `BACKEND_ACTIVE`: backend id -> open connections of `least_conn` services.
pub const BACKEND_ACTIVE: &str = "VIKING_BACKEND_ACTIVE";
/// `RECENT_SOCKETS`: direct-mapped table of recently redirected sockets.
pub const RECENT_SOCKETS: &str = "VIKING_RECENT_SOCKETS";
/// `SOCKETS`: socket storage of counted sockets and of sockets whose peer was asked for.
pub const SOCKETS: &str = "VIKING_SOCKETS";
/// `REV_NAT`: (socket, backend) -> VIP, for unconnected UDP replies.
pub const REV_NAT: &str = "VIKING_REV_NAT";
/// `AFFINITY`: (client cgroup, service) -> backend.
pub const AFFINITY: &str = "VIKING_AFFINITY";

/// `OUTLIER_POLICY`: service id -> when failing backends are ejected.
pub const OUTLIER_POLICY: &str = "VIKING_OUTLIER_POLICY";
/// `BACKEND_HEALTH`: backend id -> connect outcomes and ejection.
pub const BACKEND_HEALTH: &str = "VIKING_BACKEND_HEALTH";

/// `MONITOR`: whether (and how often) connects are reported to `CONNECT_EVENTS`.
pub const MONITOR: &str = "VIKING_MONITOR";
/// `CONNECT_EVENTS`: ring buffer of connect decisions, for `viking-agent monitor`.
pub const CONNECT_EVENTS: &str = "VIKING_CONNECT_EVENTS";

/// `LAYOUT`: the layout version of the pins (agent only).
pub const LAYOUT: &str = "VIKING_LAYOUT";

/// `CGROUP_POLICY`: cgroup id -> policy mode.
pub const CGROUP_POLICY: &str = "VIKING_CGROUP_POLICY";
/// `ALLOWED`: (cgroup id, VIP) declared.
pub const ALLOWED: &str = "VIKING_ALLOWED";
/// `OVERLAYS`: (cgroup id, port, protocol) on the ambassador address -> service frontend.
pub const OVERLAYS: &str = "VIKING_OVERLAYS";
/// `SETTINGS`: host-wide settings (ambassador address).
pub const SETTINGS: &str = "VIKING_SETTINGS";
/// `CONTAINER_SCOPE`: the container runtime's parent cgroup and the mode of its children
/// that have no entry yet.
pub const CONTAINER_SCOPE: &str = "VIKING_CONTAINER_SCOPE";
/// `UNKNOWN_CONTAINERS`: per-CPU counters of VIP connects from such children.
pub const UNKNOWN_CONTAINERS: &str = "VIKING_UNKNOWN_CONTAINERS";
/// `AUDIT_EVENTS`: ring buffer of undeclared connects.
pub const AUDIT_EVENTS: &str = "VIKING_AUDIT_EVENTS";

/// `cgroup/connect4`: TCP and connected UDP on IPv4 sockets.
pub const PROG_CONNECT4: &str = "viking_connect4";
/// `cgroup/connect6`: the same on IPv6 sockets (v4-mapped VIPs included).
pub const PROG_CONNECT6: &str = "viking_connect6";
/// `cgroup/sendmsg4`: unconnected UDP `sendto(VIP)` on IPv4 sockets.
pub const PROG_SENDMSG4: &str = "viking_sendmsg4";
/// `cgroup/sendmsg6`: the same on IPv6 sockets.
pub const PROG_SENDMSG6: &str = "viking_sendmsg6";
/// `cgroup/recvmsg4`: UDP replies appear to come from the VIP.
pub const PROG_RECVMSG4: &str = "viking_recvmsg4";
/// `cgroup/recvmsg6`: the same on IPv6 sockets.
pub const PROG_RECVMSG6: &str = "viking_recvmsg6";
/// `cgroup/getpeername4`: a redirected socket's peer is the VIP.
pub const PROG_GETPEERNAME4: &str = "viking_getpeername4";
/// `cgroup/getpeername6`: the same on IPv6 sockets.
pub const PROG_GETPEERNAME6: &str = "viking_getpeername6";
/// `cgroup/sock_release`: uncounts `least_conn` connections.
pub const PROG_SOCK_RELEASE: &str = "viking_sock_release";
/// `sockops`: how redirected TCP connects end (outlier ejection).
pub const PROG_SOCK_OPS: &str = "viking_sock_ops";
