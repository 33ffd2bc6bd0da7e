//! `getpeername()` on a redirected socket returns the VIP, not the backend: applications and
//! TLS libraries that check their peer see the address they connected to.

use aya_ebpf::{macros::cgroup_sock_addr, programs::SockAddrContext};

use super::ALLOW;
use crate::{
    sockaddr::{SockAddr, V4, V6},
    sockets,
};

/// IPv4 sockets.
#[cgroup_sock_addr(getpeername4)]
pub fn viking_getpeername4(ctx: SockAddrContext) -> i32 {
    reverse_connected::<V4>(&ctx);
    ALLOW
}

/// IPv6 sockets.
#[cgroup_sock_addr(getpeername6)]
pub fn viking_getpeername6(ctx: SockAddrContext) -> i32 {
    reverse_connected::<V6>(&ctx);
    ALLOW
}

/// If the address in `ctx` is the backend this socket's connect was sent to, writes the
/// VIP instead. Returns whether it did. Shared with the UDP receive hooks.
#[inline(always)]
pub fn reverse_connected<const IPV6: bool>(ctx: &SockAddrContext) -> bool {
    let Some(state) = sockets::lookup(ctx) else {
        return false;
    };
    let mut sock = SockAddr::<IPV6>::new(ctx);
    // The socket may have been connected elsewhere since (UDP): only its current peer counts.
    if !sock.is(&state.backend, state.backend_port_be) {
        return false;
    }
    sock.set(&state.vip, state.vip_port_be).is_ok()
}
