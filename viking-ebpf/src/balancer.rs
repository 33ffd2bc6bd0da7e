//! Frontend lookup and backend choice, shared by every hook that redirects.

use aya_ebpf::helpers::generated::bpf_get_prandom_u32;
use viking_common::{Algorithm, Backend, ServiceKey, ServiceValue};

use crate::maps::{BACKENDS, RR_CURSORS, SERVICE_STATS, SERVICES};

/// Why a connect to a VIP is refused.
#[derive(Clone, Copy)]
pub enum Refusal {
    /// The service exists but has no backend (or its slots are being rewritten).
    NoBackend,
    /// The chosen backend's address family cannot be used on this socket.
    FamilyMismatch,
}

/// Looks up `frontend` (slot 0) and picks one of its backends.
///
/// `Ok(None)`: not a VIP, the connect is left alone. `Err`: a VIP that cannot be served;
/// the caller refuses the connect at once.
#[inline(always)]
pub fn select_backend(frontend: &ServiceKey) -> Result<Option<Backend>, Refusal> {
    let Some(service) = SERVICES.get_ptr(frontend) else {
        return Ok(None);
    };
    // SAFETY: the pointer comes from a successful lookup and is read once, by value.
    let service: ServiceValue = unsafe { *service };
    if service.count == 0 {
        count(service.service_id, |s| s.refused_no_backend += 1);
        return Err(Refusal::NoBackend);
    }
    let slot = pick_slot(&service);
    let Some(backend) = backend_in_slot(frontend, slot)
        // The agent lowers the count before it deletes slots, but a reader may have read the
        // old count just before: slot 1 exists whenever count >= 1.
        .or_else(|| backend_in_slot(frontend, 1))
    else {
        count(service.service_id, |s| s.refused_no_backend += 1);
        return Err(Refusal::NoBackend);
    };
    count(service.service_id, |s| s.redirected += 1);
    Ok(Some(backend))
}

/// A slot in `1..=count` according to the service's algorithm.
#[inline(always)]
fn pick_slot(service: &ServiceValue) -> u16 {
    let count = u32::from(service.count);
    let turn = match Algorithm::from_u8(service.algorithm) {
        Algorithm::RoundRobin => match RR_CURSORS.get_ptr_mut(service.service_id) {
            // A plain read-increment-write, not an atomic fetch-add: stable Rust cannot emit
            // BPF atomic instructions (the target has no `target_has_atomic`). One client
            // gets exact alternation; two CPUs connecting at the same instant may both read
            // the same turn, which skews nothing over time. See docs/design-notes.md.
            Some(cursor) => {
                // SAFETY: the pointer is to a live, aligned array element of this map.
                let turn = unsafe { cursor.read_volatile() };
                // SAFETY: as above.
                unsafe { cursor.write_volatile(turn.wrapping_add(1)) };
                turn
            }
            None => 0,
        },
        // SAFETY: a helper without arguments.
        Algorithm::Random => unsafe { bpf_get_prandom_u32() },
    };
    // `count` is 1..=u16::MAX, so the result fits in u16.
    (turn % count + 1) as u16
}

#[inline(always)]
fn backend_in_slot(frontend: &ServiceKey, slot: u16) -> Option<Backend> {
    let entry = SERVICES.get_ptr(frontend.with_slot(slot))?;
    // SAFETY: pointer from a successful lookup, read once by value.
    let backend_id = unsafe { (*entry).backend_id };
    let backend = *BACKENDS.get(backend_id)?;
    backend.is_set().then_some(backend)
}

#[inline(always)]
fn count(service_id: u32, bump: impl FnOnce(&mut viking_common::ServiceStats)) {
    if let Some(stats) = SERVICE_STATS.get_ptr_mut(service_id) {
        // SAFETY: per-CPU value of this CPU; programs do not migrate while running.
        bump(unsafe { &mut *stats });
    }
}
