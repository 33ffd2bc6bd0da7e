//! Passive outlier ejection. `sock_ops` reports how each redirected TCP connect ended; a
//! backend with `consecutive_failures` failures in a row is ejected for a while, and
//! connect then chooses another backend of the service instead. Never more than
//! `max_ejection_percent` of a service's slots are ejected; when every backend a connect
//! looks at is ejected, it uses the one it chose (panic mode, as Envoy's). When an
//! ejection ends, the backend is on probation until a connect to it succeeds: one more
//! failure ejects it again, for twice as long.

use core::{ffi::c_void, ptr};

use aya_ebpf::helpers::generated::{bpf_get_prandom_u32, bpf_ktime_get_ns, bpf_loop};
use viking_common::{Backend, IPPROTO_TCP, OutlierPolicy, ServiceKey, SocketState};

use crate::{
    atomic,
    balancer::lookup,
    maps::{BACKEND_HEALTH, BACKENDS, OUTLIER_POLICY, SERVICES},
};

/// Slots a connect looks at, from a random start, to replace an ejected backend.
const PROBES: u32 = 8;
/// Slots the ejection check counts when it enforces `max_ejection_percent`; a larger
/// service is judged by its first this many slots.
const EJECTION_SCAN: u32 = 1024;

/// The current time (`CLOCK_MONOTONIC`, ns).
#[inline(always)]
fn now() -> u64 {
    // SAFETY: helper without arguments.
    unsafe { bpf_ktime_get_ns() }
}

/// Whether a TCP connect to `frontend` (service `service_id`) must not use `backend_id`
/// now.
#[inline(always)]
pub fn is_ejected(frontend: &ServiceKey, service_id: u32, backend_id: u32) -> bool {
    if frontend.protocol != IPPROTO_TCP {
        return false;
    }
    match BACKEND_HEALTH.get(backend_id) {
        Some(health) => health.ejected_until_ns != 0 && health.is_ejected(now()) && ejects(service_id),
        None => false,
    }
}

/// Whether service `service_id` skips ejected backends. Health is kept per backend
/// address, which services may share: one that turned ejection off keeps using them.
#[inline(always)]
fn ejects(service_id: u32) -> bool {
    OUTLIER_POLICY.get(service_id).is_some_and(OutlierPolicy::is_enabled)
}

/// The backend a TCP connect uses instead of `chosen` when `chosen` is ejected: another
/// backend of the service that is not, else `chosen`. A backend never ejected costs one
/// array lookup and no clock read.
#[inline(always)]
pub fn avoid_ejected(frontend: &ServiceKey, service_id: u32, count: u16, chosen: (u32, Backend)) -> (u32, Backend) {
    if frontend.protocol != IPPROTO_TCP {
        return chosen;
    }
    let Some(health) = BACKEND_HEALTH.get_ptr_mut(chosen.0) else {
        return chosen;
    };
    // SAFETY: pointer from a successful lookup of a live array element.
    let until = unsafe { (*health).ejected_until_ns };
    if until == 0 {
        return chosen;
    }
    let now = now();
    if until <= now || !ejects(service_id) {
        // The ejection is over (this connect probes the backend), or this service does
        // not eject.
        return chosen;
    }
    let Some(other) = replacement(frontend, u32::from(count), now) else {
        return chosen;
    };
    // SAFETY: as above.
    unsafe { atomic::add(ptr::addr_of_mut!((*health).skipped_total), 1) };
    other
}

/// The state of a search for a backend that is not ejected, shared with [`probe_slot`].
#[repr(C)]
struct Probe {
    frontend: ServiceKey,
    count: u32,
    start: u32,
    now: u64,
    found_id: u32,
}

/// A backend of the service that is not ejected, among up to `PROBES` slots.
#[inline(always)]
fn replacement(frontend: &ServiceKey, count: u32, now: u64) -> Option<(u32, Backend)> {
    if count == 0 {
        return None;
    }
    let mut probe = Probe {
        frontend: *frontend,
        count,
        // SAFETY: helper without arguments.
        start: unsafe { bpf_get_prandom_u32() } % count,
        now,
        found_id: u32::MAX,
    };
    let step: extern "C" fn(u32, *mut c_void) -> i64 = probe_slot;
    // SAFETY: `probe` lives on this stack frame for the whole call; the callback only
    // accesses it through the pointer it is given.
    unsafe { bpf_loop(count.min(PROBES), step as *mut c_void, ptr::from_mut(&mut probe).cast(), 0) };
    let backend = *BACKENDS.get(probe.found_id)?;
    backend.is_set().then_some((probe.found_id, backend))
}

/// One probe: stops at the first slot whose backend is set and not ejected.
extern "C" fn probe_slot(index: u32, context: *mut c_void) -> i64 {
    // SAFETY: `context` is the `Probe` that `replacement` passed to `bpf_loop`.
    let probe = unsafe { &mut *context.cast::<Probe>() };
    let Some(backend_id) = slot_backend(&probe.frontend, probe.count, probe.start, index) else {
        return 0;
    };
    if BACKENDS.get(backend_id).is_none_or(|b| !b.is_set()) {
        return 0;
    }
    if BACKEND_HEALTH.get(backend_id).is_some_and(|h| h.is_ejected(probe.now)) {
        return 0;
    }
    probe.found_id = backend_id;
    1
}

/// The backend id in slot `start + index` (wrapped) of a service with `count` slots.
#[inline(always)]
fn slot_backend(frontend: &ServiceKey, count: u32, start: u32, index: u32) -> Option<u32> {
    if count == 0 {
        return None;
    }
    // start < count and index < count, so one subtraction wraps the position.
    let mut position = start.wrapping_add(index);
    if position >= count {
        position -= count;
    }
    let entry = SERVICES.get_ptr(frontend.with_slot(position as u16 + 1))?;
    // SAFETY: pointer from a successful lookup, read once.
    Some(unsafe { (*entry).backend_id })
}

/// A redirected connect reached its backend.
#[inline(always)]
pub fn connect_succeeded(state: &SocketState) {
    let Some(health) = BACKEND_HEALTH.get_ptr_mut(state.backend_id) else {
        return;
    };
    // SAFETY: pointer from a successful lookup of a live array element; plain loads and
    // stores (only written when they change, so healthy backends' lines stay shared).
    let health = unsafe { &mut *health };
    if health.consecutive_failures != 0 {
        health.consecutive_failures = 0;
    }
    if health.ejections == 0 {
        return;
    }
    if health.ejected_until_ns != 0 {
        if health.ejected_until_ns > now() {
            // Chosen while ejected (panic mode): no sign of recovery yet.
            return;
        }
        health.ejected_until_ns = 0;
    }
    health.consecutive_successes += 1;
    let threshold = policy_of(state).map_or(1, |p| u64::from(p.consecutive_failures));
    if health.consecutive_successes >= threshold {
        // Recovered: the next ejection starts from the base time again.
        health.ejections = 0;
        health.consecutive_successes = 0;
    }
}

/// A redirected connect failed before it was established (refused, reset, or its SYN
/// timed out). Ejects the backend when that makes `consecutive_failures` in a row and the
/// service has room for one more ejected backend.
#[inline(always)]
pub fn connect_failed(state: &SocketState) {
    let Some(health) = BACKEND_HEALTH.get_ptr_mut(state.backend_id) else {
        return;
    };
    // SAFETY: pointer from a successful lookup of a live, 8-byte aligned array element.
    let failures = unsafe {
        atomic::add(ptr::addr_of_mut!((*health).failures_total), 1);
        (*health).consecutive_successes = 0;
        atomic::fetch_add(ptr::addr_of_mut!((*health).consecutive_failures), 1) + 1
    };
    let frontend = ServiceKey::new(state.vip, state.vip_port_be, IPPROTO_TCP, 0);
    let Some(service) = lookup(&frontend) else {
        return;
    };
    let Some(policy) = OUTLIER_POLICY.get(service.service_id).copied() else {
        return;
    };
    // SAFETY: as above.
    let health = unsafe { &mut *health };
    // A backend whose ejection ended and that has not succeeded since is on probation:
    // its first failure ejects it again (for twice as long).
    let on_probation = health.ejected_until_ns != 0;
    if !policy.is_enabled() || (failures < u64::from(policy.consecutive_failures) && !on_probation) {
        return;
    }
    let now = now();
    if health.is_ejected(now) || !room_to_eject(&frontend, service.count, state.backend_id, &policy, now) {
        return;
    }
    health.ejected_until_ns = now + policy.ejection_ns(health.ejections);
    health.ejections += 1;
    health.consecutive_failures = 0;
    // SAFETY: as above.
    unsafe { atomic::add(ptr::addr_of_mut!(health.ejections_total), 1) };
}

/// The outlier policy of the service a socket connected to.
#[inline(always)]
fn policy_of(state: &SocketState) -> Option<OutlierPolicy> {
    let service = lookup(&ServiceKey::new(state.vip, state.vip_port_be, IPPROTO_TCP, 0))?;
    OUTLIER_POLICY.get(service.service_id).copied()
}

/// The state of an ejection check, shared with [`count_slot`].
#[repr(C)]
struct Census {
    frontend: ServiceKey,
    now: u64,
    candidate: u32,
    /// Slots of the candidate backend.
    candidate_slots: u32,
    /// Slots of other backends that are ejected now.
    ejected_slots: u32,
}

/// Whether ejecting `candidate` keeps the ejected share of the service's slots within
/// `max_ejection_percent`.
#[inline(always)]
fn room_to_eject(frontend: &ServiceKey, count: u16, candidate: u32, policy: &OutlierPolicy, now: u64) -> bool {
    let slots = u32::from(count).min(EJECTION_SCAN);
    let mut census = Census { frontend: *frontend, now, candidate, candidate_slots: 0, ejected_slots: 0 };
    let step: extern "C" fn(u32, *mut c_void) -> i64 = count_slot;
    // SAFETY: `census` lives on this stack frame for the whole call; the callback only
    // accesses it through the pointer it is given.
    unsafe { bpf_loop(slots, step as *mut c_void, ptr::from_mut(&mut census).cast(), 0) };
    let ejected = u64::from(census.ejected_slots) + u64::from(census.candidate_slots);
    ejected * 100 <= u64::from(policy.max_ejection_percent) * u64::from(slots)
}

/// One census step: what slot `index + 1` holds.
extern "C" fn count_slot(index: u32, context: *mut c_void) -> i64 {
    // SAFETY: `context` is the `Census` that `room_to_eject` passed to `bpf_loop`.
    let census = unsafe { &mut *context.cast::<Census>() };
    let Some(entry) = SERVICES.get_ptr(census.frontend.with_slot(index as u16 + 1)) else {
        return 0;
    };
    // SAFETY: pointer from a successful lookup, read once.
    let backend_id = unsafe { (*entry).backend_id };
    if backend_id == census.candidate {
        census.candidate_slots += 1;
    } else if BACKEND_HEALTH.get(backend_id).is_some_and(|h| h.is_ejected(census.now)) {
        census.ejected_slots += 1;
    }
    0
}
