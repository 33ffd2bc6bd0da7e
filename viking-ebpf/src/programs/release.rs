//! Socket release: a connection to a `least_conn` backend stops counting.

use core::ptr;

use aya_ebpf::{helpers::generated::bpf_sk_storage_get, macros::cgroup_sock, programs::SockContext};
use viking_common::SocketState;

use crate::{balancer::close_connection, maps::SOCKETS};

/// Runs when any socket of the cgroup is released. Always lets it go.
#[cgroup_sock(sock_release)]
pub fn viking_sock_release(ctx: SockContext) -> i32 {
    uncount(&ctx);
    1
}

fn uncount(ctx: &SockContext) {
    let map = ptr::from_ref(&SOCKETS).cast_mut().cast();
    // SAFETY: `map` is the socket-storage map (its address is what the loader relocates),
    // the socket is valid for the program's duration, and no entry is created.
    let state = unsafe { bpf_sk_storage_get(map, ctx.sock.cast(), ptr::null_mut(), 0) }.cast::<SocketState>();
    if state.is_null() {
        return;
    }
    // SAFETY: non-null pointer to this socket's storage.
    let flags = unsafe { (*state).flags };
    if flags & SocketState::COUNTED != 0 {
        // SAFETY: as above.
        unsafe { (*state).flags = flags & !SocketState::COUNTED };
        // SAFETY: as above.
        close_connection(unsafe { (*state).backend_id });
    }
}
