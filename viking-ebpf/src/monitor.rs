//! Reports connect decisions to `CONNECT_EVENTS` while `viking-agent monitor` watches.
//! When nobody does, a connect pays one array read.

use aya_ebpf::helpers::generated::{bpf_get_current_cgroup_id, bpf_get_prandom_u32};
use viking_common::{ConnectEvent, Ip6, Verdict};

use crate::{
    balancer::{Choice, Refusal},
    maps::{CONNECT_EVENTS, MONITOR},
};

/// Reports what connect decided for `vip:port_be` (nothing for a destination that is not
/// a VIP), if a monitor watches and this connect is sampled.
#[inline(always)]
pub fn report(vip: Ip6, port_be: u16, protocol: u8, result: &Result<Option<Choice>, Refusal>) {
    let Some(settings) = MONITOR.get(0) else {
        return;
    };
    let every = settings.sample_every;
    if every == 0 {
        return;
    }
    // SAFETY: helper without arguments.
    if every > 1 && unsafe { bpf_get_prandom_u32() } % every != 0 {
        return;
    }
    let (verdict, choice) = match result {
        Ok(None) => return,
        Ok(Some(choice)) => (Verdict::Redirected, Some(choice)),
        Err(Refusal::NoBackend) => (Verdict::NoBackend, None),
        Err(Refusal::Policy) => (Verdict::Policy, None),
        Err(Refusal::FamilyMismatch) => (Verdict::FamilyMismatch, None),
    };
    let event = ConnectEvent {
        // SAFETY: helper without arguments.
        cgroup_id: unsafe { bpf_get_current_cgroup_id() },
        vip,
        backend: choice.map(|c| c.backend.address).unwrap_or_default(),
        port_be,
        backend_port_be: choice.map_or(0, |c| c.backend.port_be),
        protocol,
        verdict: verdict as u8,
        _pad0: [0; 2],
        backend_id: choice.map_or(0, |c| c.backend_id),
        _pad1: 0,
    };
    // A full buffer (the monitor falls behind) drops the record, never the decision.
    let _ = CONNECT_EVENTS.output(&event, 0);
}
