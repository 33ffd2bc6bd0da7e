//! Passive outlier ejection: the kernel watches how each redirected TCP connect ends and
//! stops choosing a backend that keeps failing, for a while.

/// Value of the `OUTLIER_POLICY` array, indexed by service id: when and for how long a
/// failing backend of the service is ejected. All zero = ejection off for the service.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct OutlierPolicy {
    /// First ejection of a backend, in milliseconds; each ejection that follows without a
    /// recovery in between lasts twice as long as the one before, up to `max_ejection_ms`.
    pub base_ejection_ms: u32,
    /// Longest ejection, in milliseconds.
    pub max_ejection_ms: u32,
    /// Failed connects in a row that eject a backend; 0 = never eject.
    pub consecutive_failures: u16,
    /// Largest share of the service's backend slots that may be ejected at once, in percent.
    pub max_ejection_percent: u8,
    /// Explicit padding, always 0.
    pub _pad: u8,
}

impl OutlierPolicy {
    /// Whether the service ejects failing backends at all.
    #[inline(always)]
    pub const fn is_enabled(&self) -> bool {
        self.consecutive_failures != 0
    }

    /// How long the ejection after `previous` earlier ones lasts, in nanoseconds: the base
    /// time doubled per earlier ejection, capped.
    #[inline(always)]
    pub const fn ejection_ns(&self, previous: u64) -> u64 {
        let doublings = if previous > 16 { 16 } else { previous };
        let ms = (self.base_ejection_ms as u64) << doublings;
        let ms = if ms > self.max_ejection_ms as u64 { self.max_ejection_ms as u64 } else { ms };
        ms * 1_000_000
    }
}

/// Value of the `BACKEND_HEALTH` array, indexed by backend id: what the kernel has seen of
/// the backend's connects. Shared by every CPU; the counters the hot path bumps are
/// updated with atomic adds, the rest with plain stores (a lost update between two CPUs
/// only shifts an ejection by one connect).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BackendHealth {
    /// `bpf_ktime_get_ns` (CLOCK_MONOTONIC) until which the backend is ejected; 0 = not
    /// ejected. An expired time stays until the next connect to the backend succeeds.
    pub ejected_until_ns: u64,
    /// Connects that failed since the last success.
    pub consecutive_failures: u64,
    /// Connects that succeeded since the last ejection ended (a recovery resets the
    /// doubling once there are as many as the failures that eject).
    pub consecutive_successes: u64,
    /// Ejections since the last recovery: the next one lasts `2^ejections` times the base.
    pub ejections: u64,
    /// Failed connects in all (refused, reset or timed out before established).
    pub failures_total: u64,
    /// Ejections in all.
    pub ejections_total: u64,
    /// Connects that chose this backend while it was ejected and went to another one.
    pub skipped_total: u64,
}

impl BackendHealth {
    /// Whether the backend is ejected at `now_ns`.
    #[inline(always)]
    pub const fn is_ejected(&self, now_ns: u64) -> bool {
        self.ejected_until_ns > now_ns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ejection_doubles_from_the_base_up_to_the_cap() {
        let policy = OutlierPolicy {
            base_ejection_ms: 10_000,
            max_ejection_ms: 300_000,
            consecutive_failures: 3,
            max_ejection_percent: 50,
            _pad: 0,
        };
        let seconds: [u64; 7] = core::array::from_fn(|n| policy.ejection_ns(n as u64) / 1_000_000_000);
        assert_eq!(seconds, [10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(policy.ejection_ns(u64::MAX), 300_000_000_000, "no overflow after many ejections");
    }
}
