//! Sizes of the kernel maps (`[limits]`), checked once.

use std::fmt;

use serde::Deserialize;
use viking_common::limits;

/// `[limits]`: sizes of the kernel maps, fixed when the maps are created. Changing them
/// takes effect when the pinned maps are recreated (`viking-agent uninstall`, then `run`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Frontends (`vip:port/protocol`) the kernel can hold.
    pub max_services: u32,
    /// Distinct backend addresses over all services.
    pub max_backends: u32,
    /// Backends one service may have.
    pub max_backends_per_service: u16,
    /// Entries of the service hash: one per service plus one per backend slot.
    pub max_service_slots: u32,
    /// Unconnected UDP flows (socket x backend) whose replies are translated back to the VIP.
    pub max_rev_nat: u32,
    /// Client affinity entries (client cgroup x service).
    pub max_affinity: u32,
    /// Recently redirected sockets whose VIP `getpeername` can show without the socket
    /// having asked before (a direct-mapped table of this many entries, 56 bytes each).
    pub max_recent_sockets: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_services: limits::MAX_SERVICES,
            max_backends: limits::MAX_BACKENDS,
            max_backends_per_service: limits::MAX_BACKENDS_PER_SERVICE,
            max_service_slots: limits::MAX_SERVICE_SLOTS,
            max_rev_nat: limits::MAX_REV_NAT,
            max_affinity: limits::MAX_AFFINITY,
            max_recent_sockets: limits::MAX_RECENT_SOCKETS,
        }
    }
}

/// A limit outside the range the maps can be created with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{field}` = {value}: out of range {min}..={max}")]
pub struct LimitError {
    /// The setting, e.g. `limits.max_services`.
    pub field: &'static str,
    /// Its value.
    pub value: u64,
    /// The smallest accepted value.
    pub min: u64,
    /// The largest accepted value.
    pub max: u64,
}

impl Limits {
    /// Checks every limit against what the maps can be created with.
    pub fn check(&self) -> Result<(), LimitError> {
        let checks: [(&'static str, u64, u64, u64); 7] = [
            ("limits.max_services", self.max_services.into(), 1, 1 << 24),
            ("limits.max_backends", self.max_backends.into(), 1, 1 << 24),
            ("limits.max_backends_per_service", self.max_backends_per_service.into(), 1, u16::MAX.into()),
            ("limits.max_service_slots", self.max_service_slots.into(), 2, 1 << 26),
            ("limits.max_rev_nat", self.max_rev_nat.into(), 1, 1 << 26),
            ("limits.max_affinity", self.max_affinity.into(), 1, 1 << 24),
            ("limits.max_recent_sockets", self.max_recent_sockets.into(), 1, 1 << 24),
        ];
        match checks.into_iter().find(|(_, value, min, max)| !(min..=max).contains(&value)) {
            Some((field, value, min, max)) => Err(LimitError { field, value, min, max }),
            None => Ok(()),
        }
    }
}

impl fmt::Display for Limits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "max_services={} max_backends={} max_backends_per_service={} max_service_slots={} max_rev_nat={} max_affinity={} max_recent_sockets={}",
            self.max_services,
            self.max_backends,
            self.max_backends_per_service,
            self.max_service_slots,
            self.max_rev_nat,
            self.max_affinity,
            self.max_recent_sockets
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_pass_and_a_limit_out_of_range_is_named() {
        assert_eq!(Limits::default().check(), Ok(()));
        let slots = Limits { max_service_slots: 1, ..Limits::default() };
        assert_eq!(
            slots.check(),
            Err(LimitError { field: "limits.max_service_slots", value: 1, min: 2, max: 1 << 26 })
        );
    }
}
