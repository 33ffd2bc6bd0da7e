//! Which VIPs a container may use, and its port overlays, decided at connect time from
//! the cgroup id of the connecting process.

use aya_ebpf::helpers::generated::{bpf_get_current_ancestor_cgroup_id, bpf_get_current_cgroup_id};
use viking_common::{
    AllowKey, AuditEvent, Ip6, OverlayKey, OverlayTarget, PolicyMode, Settings, UnknownContainerStats,
};

use crate::maps::{ALLOWED, AUDIT_EVENTS, CGROUP_POLICY, CONTAINER_SCOPE, OVERLAYS, SETTINGS, UNKNOWN_CONTAINERS};

/// What a container may do with a VIP connect.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Translate it.
    Admit,
    /// Leave it alone: the cgroup opted out of Viking.
    Bypass,
    /// Refuse it (`enforce` and undeclared).
    Refuse,
}

/// The cgroup id of the connecting process (its container).
#[inline(always)]
pub fn current_cgroup() -> u64 {
    // SAFETY: helper without arguments.
    unsafe { bpf_get_current_cgroup_id() }
}

/// The host-wide settings (an array lookup, which the verifier inlines).
#[inline(always)]
pub fn settings() -> Settings {
    SETTINGS.get(0).copied().unwrap_or_default()
}

/// Whether `address` is the ambassador address of port overlays (none when unset).
#[inline(always)]
pub fn is_ambassador(settings: &Settings, address: &Ip6) -> bool {
    settings.ambassador.words != [0; 4] && settings.ambassador == *address
}

/// The service frontend the container's connect to the ambassador on `port_be` stands for.
#[inline(always)]
pub fn overlay(cgroup_id: u64, port_be: u16, protocol: u8) -> Option<OverlayTarget> {
    let key = OverlayKey { cgroup_id, port_be, protocol, _pad: [0; 5] };
    // SAFETY: the value is copied at once.
    unsafe { OVERLAYS.get(&key) }.copied()
}

/// Checks a VIP connect against the container's policy; undeclared connects in `audit`
/// or `enforce` mode are reported to the agent. A cgroup without an entry of its own is a
/// container the agent has not seen yet when it lies below the runtime's parent cgroup:
/// the scope's mode applies to it (the backstop); any other cgroup is not checked.
#[inline(always)]
pub fn admit(cgroup_id: u64, vip: &Ip6, port_be: u16, protocol: u8) -> Admission {
    // SAFETY: the value is copied at once.
    let (mode, flags) = match unsafe { CGROUP_POLICY.get(&cgroup_id) }.copied() {
        Some(policy) => (PolicyMode::from_u8(policy.mode), 0),
        None => match unknown_container_mode(cgroup_id) {
            Some(mode) => (mode, AuditEvent::UNKNOWN_CONTAINER),
            None => return Admission::Admit,
        },
    };
    match mode {
        PolicyMode::Off => return Admission::Admit,
        PolicyMode::Bypass => return Admission::Bypass,
        PolicyMode::Audit | PolicyMode::Enforce => {}
    }
    let declared = AllowKey { cgroup_id, vip: *vip };
    // SAFETY: only presence is checked.
    if flags == 0 && unsafe { ALLOWED.get(&declared) }.is_some() {
        return Admission::Admit;
    }
    let enforce = mode == PolicyMode::Enforce;
    if flags != 0 {
        count_unknown(|s| if enforce { s.refused += 1 } else { s.audited += 1 });
    }
    let event = AuditEvent { cgroup_id, vip: *vip, port_be, protocol, mode: mode as u8, flags };
    // A full buffer (agent not reading) drops the record, never the decision.
    let _ = AUDIT_EVENTS.output(&event, 0);
    if enforce { Admission::Refuse } else { Admission::Admit }
}

/// The scope's mode when `cgroup_id` lies strictly below the runtime's parent cgroup.
#[inline(always)]
fn unknown_container_mode(cgroup_id: u64) -> Option<PolicyMode> {
    let scope = CONTAINER_SCOPE.get(0).copied()?;
    if scope.parent_cgroup_id == 0 || scope.parent_cgroup_id == cgroup_id {
        return None;
    }
    // SAFETY: helper taking a level; a level deeper than the current cgroup returns 0.
    let ancestor = unsafe { bpf_get_current_ancestor_cgroup_id(scope.parent_level as i32) };
    (ancestor == scope.parent_cgroup_id).then(|| PolicyMode::from_u8(scope.mode))
}

#[inline(always)]
fn count_unknown(bump: impl FnOnce(&mut UnknownContainerStats)) {
    if let Some(stats) = UNKNOWN_CONTAINERS.get_ptr_mut(0) {
        // SAFETY: per-CPU value of this CPU; programs do not migrate while running.
        bump(unsafe { &mut *stats });
    }
}
