//! Per-socket translation state: where a redirected socket's VIP is remembered, so that
//! `getpeername` and replies show the VIP, and `least_conn` can uncount it on release.

use core::ptr;

use aya_ebpf::{
    EbpfContext,
    helpers::generated::{bpf_get_socket_cookie, bpf_sk_storage_get},
    programs::{SockAddrContext, SockOpsContext},
};
use viking_common::{SocketRecord, SocketState};

use crate::{
    balancer::close_connection,
    maps::{RECENT_SOCKETS, SOCKETS},
    policy::settings,
};

/// The socket's cookie (a unique, never reused 64-bit id).
#[inline(always)]
pub fn cookie(ctx: &impl EbpfContext) -> u64 {
    // SAFETY: helper on the valid context (a socket address or `sock_ops` context).
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

/// What connect did to the socket of a `sock_ops` event, if it was redirected and its
/// record is still known. Nothing is created or promoted.
#[inline(always)]
pub fn lookup_ops(ctx: &SockOpsContext) -> Option<SocketState> {
    let size = settings().recent_sockets;
    if size != 0 {
        let cookie = cookie(ctx);
        if let Some(record) = RECENT_SOCKETS.get((cookie % u64::from(size)) as u32) {
            if record.cookie == cookie {
                return Some(record.state);
            }
        }
    }
    // SAFETY: `ops` is the program's valid context; `sk` is a readable field.
    let sk = unsafe { (*ctx.ops).__bindgen_anon_2.sk };
    if sk.is_null() {
        return None;
    }
    let map = ptr::from_ref(&SOCKETS).cast_mut().cast();
    // SAFETY: `map` is the socket-storage map (its address is what the loader relocates),
    // `sk` is the event's non-null socket, and no entry is created.
    let stored = unsafe { bpf_sk_storage_get(map, sk.cast(), ptr::null_mut(), 0) }.cast::<SocketState>();
    // SAFETY: a non-null result points to this socket's storage.
    (!stored.is_null()).then(|| unsafe { *stored })
}
