//! `connect()` on TCP and UDP sockets: a VIP destination becomes a backend.

use aya_ebpf::{macros::cgroup_sock_addr, programs::SockAddrContext};
use viking_common::{IPPROTO_UDP, Ip6, SocketState};

use super::verdict;
use crate::{
    balancer::{Choice, Pick, Refusal},
    monitor,
    redirect::resolve,
    sockaddr::{SockAddr, V4, V6},
    sockets,
};

/// IPv4 sockets.
#[cgroup_sock_addr(connect4)]
pub fn viking_connect4(ctx: SockAddrContext) -> i32 {
    verdict(&ctx, try_connect::<V4>(&ctx))
}

/// IPv6 sockets, including dual-stack sockets connecting to a v4-mapped VIP
/// (`::ffff:240.0.0.10`), which find the IPv4 service.
#[cgroup_sock_addr(connect6)]
pub fn viking_connect6(ctx: SockAddrContext) -> i32 {
    verdict(&ctx, try_connect::<V6>(&ctx))
}

fn try_connect<const IPV6: bool>(ctx: &SockAddrContext) -> Result<(), Refusal> {
    let mut sock = SockAddr::<IPV6>::new(ctx);
    let Some(protocol) = sock.balanced_protocol() else {
        return Ok(());
    };
    // What the application asked for (a VIP, or the ambassador address of an overlay) is
    // what getpeername must show.
    let requested = sock.address();
    let requested_port_be = sock.port_be();
    let outcome = match resolve(&sock, protocol, Pick::ByAlgorithm) {
        Ok(Some(choice)) => sock.set(&choice.backend.address, choice.backend.port_be).map(|()| Some(choice)),
        other => other,
    };
    monitor::report(requested, requested_port_be, protocol, &outcome);
    let Some(choice) = outcome? else {
        return Ok(());
    };
    remember(ctx, requested, requested_port_be, &choice, protocol);
    Ok(())
}

/// Records the translation for getpeername, replies and release (see `sockets`).
#[inline(always)]
fn remember(ctx: &SockAddrContext, vip: Ip6, vip_port_be: u16, choice: &Choice, protocol: u8) {
    let state = SocketState {
        vip,
        backend: choice.backend.address,
        vip_port_be,
        backend_port_be: choice.backend.port_be,
        flags: 0,
        backend_id: choice.backend_id,
    };
    // Only a UDP socket connects again in practice; TCP skips the storage check.
    sockets::record(ctx, state, choice.counts_connections, protocol == IPPROTO_UDP);
}
