//! The forward path shared by `connect` and `sendmsg`: port overlay, service lookup,
//! container policy, backend choice.

use viking_common::{ServiceKey, Settings};

use crate::{
    balancer::{Choice, Pick, Refusal, count_service, lookup, select},
    policy::{Admission, admit, current_cgroup, is_ambassador, overlay, settings},
    sockaddr::SockAddr,
};

/// Decides where a connect or datagram to the context's destination goes. `Ok(None)`:
/// leave it alone (not a VIP, or the container bypasses Viking).
#[inline(always)]
pub fn resolve<const IPV6: bool>(
    sock: &SockAddr<'_, IPV6>,
    protocol: u8,
    pick: Pick,
) -> Result<Option<Choice>, Refusal> {
    let mut vip = sock.address();
    let mut port_be = sock.port_be();
    let settings = settings();
    // The cgroup id is only needed for overlays and policy; non-VIP connects never pay for it.
    let mut cgroup_id = None;
    if is_ambassador(&settings, &vip) {
        let id = current_cgroup();
        cgroup_id = Some(id);
        let Some(target) = overlay(id, port_be, protocol) else {
            return Ok(None);
        };
        vip = target.vip;
        port_be = target.port_be;
    }
    let frontend = ServiceKey::new(vip, port_be, protocol, 0);
    let Some(service) = lookup(&frontend) else {
        return Ok(None);
    };
    if settings.flags & Settings::POLICY_ACTIVE != 0 {
        match admit(cgroup_id.unwrap_or_else(current_cgroup), &vip, port_be, protocol) {
            Admission::Admit => {}
            Admission::Bypass => return Ok(None),
            Admission::Refuse => {
                count_service(service.service_id, |s| s.refused_by_policy += 1);
                return Err(Refusal::Policy);
            }
        }
    }
    select(&frontend, &service, pick).map(Some)
}
