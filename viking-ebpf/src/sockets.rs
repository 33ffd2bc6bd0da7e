//! Per-socket translation state: where a redirected socket's VIP is remembered, so that
//! `getpeername` and replies show the VIP, and `least_conn` can uncount it on release.

use aya_ebpf::{EbpfContext, helpers::generated::bpf_get_socket_cookie, programs::SockAddrContext};
use viking_common::{SocketRecord, SocketState};

use crate::{
    balancer::close_connection,
    maps::{RECENT_SOCKETS, SOCKETS},
    policy::settings,
};

/// The socket's cookie (a unique, never reused 64-bit id).
#[inline(always)]
pub fn cookie(ctx: &SockAddrContext) -> u64 {
    // SAFETY: helper on the valid context.
    unsafe { bpf_get_socket_cookie(ctx.as_ptr()) }
}

/// Records what connect did. Counted sockets (`least_conn`) get socket storage, which
/// release reads; the others a slot of the direct-mapped `RECENT_SOCKETS` table. A socket
/// connecting again (`check_previous`: UDP) first gives back a previous count.
#[inline(always)]
pub fn record(ctx: &SockAddrContext, mut state: SocketState, counted: bool, check_previous: bool) {
    if counted || check_previous {
        // SAFETY: the context's socket is valid; a null value means no creation here.
        let existing = unsafe { SOCKETS.get_ptr_mut(ctx) };
        if !existing.is_null() {
            // SAFETY: non-null pointer to this socket's storage.
            let previous = unsafe { &mut *existing };
            if previous.flags & SocketState::COUNTED != 0 {
                previous.flags &= !SocketState::COUNTED;
                close_connection(previous.backend_id);
            }
            if !counted {
                // Lookups prefer the storage: it must describe the new connect.
                *previous = state;
            }
        }
    }
    if counted {
        crate::balancer::open_connection(state.backend_id);
        state.flags = SocketState::COUNTED;
        // SAFETY: the context's socket is valid; the value initialises a new entry.
        let stored = unsafe { SOCKETS.get_or_insert_ptr_mut(ctx, Some(&mut state)) };
        if stored.is_null() {
            // No memory: the connect proceeds, counted without a way to uncount it later;
            // undo the count rather than leak it.
            close_connection(state.backend_id);
        } else {
            // SAFETY: non-null pointer to this socket's storage.
            unsafe { *stored = state };
        }
        return;
    }
    let size = settings().recent_sockets;
    if size == 0 {
        return;
    }
    let cookie = cookie(ctx);
    if let Some(slot) = RECENT_SOCKETS.get_ptr_mut((cookie % u64::from(size)) as u32) {
        // SAFETY: a live element of the array; plain stores.
        unsafe { *slot = SocketRecord { cookie, state, _pad: 0 } };
    }
}

/// What connect did to this socket, if it was redirected and its record is still known.
/// A record found in the recent table is promoted to socket storage, so the socket keeps
/// it for its whole life once it asked.
#[inline(always)]
pub fn lookup(ctx: &SockAddrContext) -> Option<SocketState> {
    // SAFETY: the context's socket is valid; no creation.
    let stored = unsafe { SOCKETS.get_ptr_mut(ctx) };
    if !stored.is_null() {
        // SAFETY: non-null pointer to this socket's storage.
        return Some(unsafe { *stored });
    }
    let size = settings().recent_sockets;
    if size == 0 {
        return None;
    }
    let cookie = cookie(ctx);
    let record = *RECENT_SOCKETS.get((cookie % u64::from(size)) as u32)?;
    if record.cookie != cookie {
        return None;
    }
    let mut state = record.state;
    // SAFETY: as above; a failed creation only means the next call looks again.
    let _ = unsafe { SOCKETS.get_or_insert_ptr_mut(ctx, Some(&mut state)) };
    Some(record.state)
}
