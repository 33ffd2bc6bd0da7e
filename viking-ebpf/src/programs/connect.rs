//! `connect()` on TCP and UDP sockets: a VIP destination becomes a backend.

use aya_ebpf::{macros::cgroup_sock_addr, programs::SockAddrContext};
use viking_common::{Ip6, SocketState};

use super::verdict;
use crate::{
    balancer::{Choice, Pick, Refusal, close_connection, open_connection},
    maps::SOCKETS,
    redirect::resolve,
    sockaddr::{SockAddr, V4, V6},
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
    let Some(choice) = resolve(&sock, protocol, Pick::ByAlgorithm)? else {
        return Ok(());
    };
    sock.set(&choice.backend.address, choice.backend.port_be)?;
    remember(ctx, requested, requested_port_be, &choice);
    Ok(())
}

/// Records the translation in the socket's storage (for getpeername, connected-UDP replies
/// and release) and moves the socket's open-connection count to the new backend.
#[inline(always)]
fn remember(ctx: &SockAddrContext, vip: Ip6, vip_port_be: u16, choice: &Choice) {
    // SAFETY: the context's socket is valid for the program's duration; a null value asks
    // the kernel to create a zeroed entry.
    let state = unsafe { SOCKETS.get_or_insert_ptr_mut(ctx, None) };
    if state.is_null() {
        // No memory for the entry: the connect still goes to the backend; only
        // getpeername will show the backend instead of the VIP.
        return;
    }
    // SAFETY: non-null pointer to this socket's storage, owned by this socket.
    let previous = unsafe { *state };
    if previous.flags & SocketState::COUNTED != 0 {
        // A UDP socket connecting again: it leaves its previous backend.
        close_connection(previous.backend_id);
    }
    let mut flags = 0;
    if choice.counts_connections {
        open_connection(choice.backend_id);
        flags = SocketState::COUNTED;
    }
    let next = SocketState {
        vip,
        backend: choice.backend.address,
        vip_port_be,
        backend_port_be: choice.backend.port_be,
        flags,
        backend_id: choice.backend_id,
    };
    // SAFETY: as above.
    unsafe { *state = next };
}
