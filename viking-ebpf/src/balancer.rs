//! Frontend lookup and backend choice, shared by every hook that redirects.

use core::{ffi::c_void, ptr};

use aya_ebpf::helpers::generated::{bpf_get_current_cgroup_id, bpf_get_prandom_u32, bpf_ktime_get_ns, bpf_loop};
use viking_common::{
    AffinityKey, AffinityValue, Algorithm, Backend, ServiceKey, ServiceStats, ServiceValue, limits::LEAST_CONN_SCAN,
};

use crate::{
    atomic, health,
    maps::{AFFINITY, BACKEND_ACTIVE, BACKEND_STATS, BACKENDS, RR_CURSORS, SERVICE_STATS, SERVICES},
};

/// Why a connect to a VIP is refused.
#[derive(Clone, Copy)]
pub enum Refusal {
    /// The service exists but has no backend (or its slots are being rewritten).
    NoBackend,
    /// The chosen backend's address family cannot be used on this socket.
    FamilyMismatch,
    /// The container did not declare the service and its policy is `enforce`.
    Policy,
}

/// How to pick among the slots.
#[derive(Clone, Copy)]
pub enum Pick {
    /// The service's algorithm (a connect).
    ByAlgorithm,
    /// From the socket cookie: every datagram an unconnected UDP socket sends to the VIP
    /// goes to the same backend (as long as the slots do not change).
    Sticky(u64),
}

/// The backend chosen for one connect.
pub struct Choice {
    /// Where to send it.
    pub backend: Backend,
    /// Its id (index into the per-backend arrays).
    pub backend_id: u32,
    /// Whether the service counts open connections (`least_conn`).
    pub counts_connections: bool,
}

/// The service entry (slot 0) of `frontend`, if it is a VIP.
#[inline(always)]
pub fn lookup(frontend: &ServiceKey) -> Option<ServiceValue> {
    let service = SERVICES.get_ptr(frontend)?;
    // SAFETY: the pointer comes from a successful lookup and is read once, by value.
    Some(unsafe { *service })
}

/// Picks one of the backends of `service` (the entry of `frontend`). `Err`: the service
/// has no usable backend; the caller refuses the connect at once.
#[inline(always)]
pub fn select(frontend: &ServiceKey, service: &ServiceValue, pick: Pick) -> Result<Choice, Refusal> {
    let algorithm = Algorithm::from_u8(service.algorithm);
    let chosen = if service.count == 0 { None } else { choose(frontend, service, algorithm, pick) };
    let Some((backend_id, backend)) = chosen else {
        count_service(service.service_id, |s| s.refused_no_backend += 1);
        return Err(Refusal::NoBackend);
    };
    count_service(service.service_id, |s| s.redirected += 1);
    if let Some(stats) = BACKEND_STATS.get_ptr_mut(backend_id) {
        // SAFETY: this CPU's value of a live per-CPU array element.
        unsafe { (*stats).connects += 1 };
    }
    Ok(Choice { backend, backend_id, counts_connections: algorithm == Algorithm::LeastConn })
}

/// Picks a backend of a service with at least one slot.
#[inline(always)]
fn choose(frontend: &ServiceKey, service: &ServiceValue, algorithm: Algorithm, pick: Pick) -> Option<(u32, Backend)> {
    let affinity = (service.affinity_secs > 0).then(|| AffinityKey {
        // SAFETY: helper without arguments.
        client_cgroup: unsafe { bpf_get_current_cgroup_id() },
        service_id: service.service_id,
        _pad: 0,
    });
    if let Some(key) = &affinity {
        // An ejected backend loses its clients: they are pinned to the next choice.
        let kept = affine_backend(key, service.affinity_secs)
            .filter(|(id, _)| !health::is_ejected(frontend, service.service_id, *id));
        if let Some(kept) = kept {
            return Some(kept);
        }
    }
    let count = u32::from(service.count);
    let slot_backend = match (pick, algorithm) {
        (Pick::ByAlgorithm, Algorithm::LeastConn) => least_loaded(frontend, count),
        (Pick::ByAlgorithm, Algorithm::RoundRobin | Algorithm::Weighted) => {
            let turn = match RR_CURSORS.get_ptr_mut(service.service_id) {
                // SAFETY: a live, aligned element of the cursor array.
                Some(cursor) => unsafe { atomic::fetch_add(cursor, 1) },
                None => 0,
            };
            backend_in_slot(frontend, service, slot_of(turn, count))
        }
        // SAFETY: helper without arguments.
        (Pick::ByAlgorithm, Algorithm::Random) => {
            backend_in_slot(frontend, service, slot_of(u64::from(unsafe { bpf_get_prandom_u32() }), count))
        }
        // A multiplicative hash spreads consecutive cookies over the slots.
        (Pick::Sticky(cookie), _) => {
            backend_in_slot(frontend, service, slot_of(cookie.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32, count))
        }
    };
    // The agent lowers the count before it deletes slots, but a reader may have read the
    // old count just before: slot 1 exists whenever count >= 1.
    let chosen = slot_backend.or_else(|| backend_in_slot(frontend, service, 1))?;
    let chosen = health::avoid_ejected(frontend, service.service_id, service.count, chosen);
    if let Some(key) = &affinity {
        // SAFETY: helper without arguments.
        let value = AffinityValue { backend_id: chosen.0, _pad: 0, last_used_ns: unsafe { bpf_ktime_get_ns() } };
        // A full LRU evicts; an error only means this client is not pinned this time.
        let _ = AFFINITY.insert(key, value, 0);
    }
    Some(chosen)
}

/// A slot in `1..=count` from any number.
#[inline(always)]
fn slot_of(turn: u64, count: u32) -> u16 {
    // `count` is 1..=u16::MAX, so the result fits in u16.
    (turn % u64::from(count) + 1) as u16
}

/// The backend a client used recently, if it is still within the window and still set.
#[inline(always)]
fn affine_backend(key: &AffinityKey, window_secs: u32) -> Option<(u32, Backend)> {
    let entry = AFFINITY.get_ptr_mut(key)?;
    // SAFETY: helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    // SAFETY: pointer from a successful lookup of this map.
    let kept = unsafe { *entry };
    if now.saturating_sub(kept.last_used_ns) > u64::from(window_secs) * 1_000_000_000 {
        return None;
    }
    let backend = *BACKENDS.get(kept.backend_id)?;
    if !backend.is_set() {
        return None;
    }
    // SAFETY: as above; refreshing the window.
    unsafe { (*entry).last_used_ns = now };
    Some((kept.backend_id, backend))
}

/// The state of one `least_conn` scan, shared with [`scan_slot`] through `bpf_loop`.
#[repr(C)]
struct Scan {
    frontend: ServiceKey,
    count: u32,
    start: u32,
    best_id: u32,
    fewest: u64,
}

/// The slot whose backend has the fewest open connections, comparing at most
/// `LEAST_CONN_SCAN` consecutive slots from a random start (which also breaks ties at
/// random). The loop runs in `bpf_loop`, so the verifier checks one iteration once,
/// whatever the paths that lead here.
#[inline(always)]
fn least_loaded(frontend: &ServiceKey, count: u32) -> Option<(u32, Backend)> {
    let mut scan = Scan {
        frontend: *frontend,
        count,
        // SAFETY: helper without arguments.
        start: unsafe { bpf_get_prandom_u32() } % count,
        best_id: u32::MAX,
        fewest: u64::MAX,
    };
    let steps = count.min(LEAST_CONN_SCAN);
    let step: extern "C" fn(u32, *mut c_void) -> i64 = scan_slot;
    // SAFETY: `scan` lives on this stack frame for the whole call; the callback only
    // accesses it through the pointer it is given.
    unsafe { bpf_loop(steps, step as *mut c_void, ptr::from_mut(&mut scan).cast(), 0) };
    let backend = *BACKENDS.get(scan.best_id)?;
    backend.is_set().then_some((scan.best_id, backend))
}

/// One `least_conn` step: compares the backend of slot `start + index` with the best so far.
extern "C" fn scan_slot(index: u32, context: *mut c_void) -> i64 {
    // SAFETY: `context` is the `Scan` that `least_loaded` passed to `bpf_loop`.
    let scan = unsafe { &mut *context.cast::<Scan>() };
    if scan.count == 0 {
        return 1;
    }
    // start < count and index < count, so one subtraction wraps the position.
    let mut position = scan.start.wrapping_add(index);
    if position >= scan.count {
        position -= scan.count;
    }
    let Some(entry) = SERVICES.get_ptr(scan.frontend.with_slot(position as u16 + 1)) else {
        return 0;
    };
    // SAFETY: pointer from a successful lookup, read once.
    let backend_id = unsafe { (*entry).backend_id };
    if let Some(active) = BACKEND_ACTIVE.get(backend_id) {
        if *active < scan.fewest {
            scan.fewest = *active;
            scan.best_id = backend_id;
        }
    }
    0
}

/// The backend of `slot` (in `1..=count`): from the copy in the service entry for the
/// first slots, else from the slot's own entry.
#[inline(always)]
fn backend_in_slot(frontend: &ServiceKey, service: &ServiceValue, slot: u16) -> Option<(u32, Backend)> {
    let backend_id = match service.first_backends.get(usize::from(slot).wrapping_sub(1)) {
        Some(id) => *id,
        None => {
            let entry = SERVICES.get_ptr(frontend.with_slot(slot))?;
            // SAFETY: pointer from a successful lookup, read once by value.
            unsafe { (*entry).backend_id }
        }
    };
    let backend = *BACKENDS.get(backend_id)?;
    backend.is_set().then_some((backend_id, backend))
}

/// Adds to a service's per-CPU counters.
#[inline(always)]
pub fn count_service(service_id: u32, bump: impl FnOnce(&mut ServiceStats)) {
    if let Some(stats) = SERVICE_STATS.get_ptr_mut(service_id) {
        // SAFETY: per-CPU value of this CPU; programs do not migrate while running.
        bump(unsafe { &mut *stats });
    }
}

/// Counts one more open connection on `backend_id` (`least_conn`).
#[inline(always)]
pub fn open_connection(backend_id: u32) {
    if let Some(active) = BACKEND_ACTIVE.get_ptr_mut(backend_id) {
        // SAFETY: a live, aligned element of the array.
        unsafe { atomic::add(active, 1) };
    }
}

/// Counts one less open connection on `backend_id`.
#[inline(always)]
pub fn close_connection(backend_id: u32) {
    if let Some(active) = BACKEND_ACTIVE.get_ptr_mut(backend_id) {
        // SAFETY: a live, aligned element of the array; adding u64::MAX subtracts one.
        unsafe { atomic::add(active, u64::MAX) };
    }
}
