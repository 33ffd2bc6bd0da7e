//! Which VIPs a container may use, and its port overlays, decided at connect time from
//! the cgroup id of the connecting process.

use aya_ebpf::helpers::generated::bpf_get_current_cgroup_id;
use viking_common::{AllowKey, AuditEvent, Ip6, OverlayKey, OverlayTarget, PolicyMode, Settings};

use crate::maps::{ALLOWED, AUDIT_EVENTS, CGROUP_POLICY, OVERLAYS, SETTINGS};

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
/// or `enforce` mode are reported to the agent.
#[inline(always)]
pub fn admit(cgroup_id: u64, vip: &Ip6, port_be: u16, protocol: u8) -> Admission {
    // SAFETY: the value is copied at once.
    let Some(policy) = (unsafe { CGROUP_POLICY.get(&cgroup_id) }).copied() else {
        return Admission::Admit;
    };
    let mode = PolicyMode::from_u8(policy.mode);
    match mode {
        PolicyMode::Off => return Admission::Admit,
        PolicyMode::Bypass => return Admission::Bypass,
        PolicyMode::Audit | PolicyMode::Enforce => {}
    }
    let declared = AllowKey { cgroup_id, vip: *vip };
    // SAFETY: only presence is checked.
    if unsafe { ALLOWED.get(&declared) }.is_some() {
        return Admission::Admit;
    }
    let event = AuditEvent { cgroup_id, vip: *vip, port_be, protocol, mode: policy.mode, _pad: 0 };
    // A full buffer (agent not reading) drops the record, never the decision.
    let _ = AUDIT_EVENTS.output(&event, 0);
    if mode == PolicyMode::Enforce { Admission::Refuse } else { Admission::Admit }
}
