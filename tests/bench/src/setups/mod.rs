//! The ways of reaching a service that the benchmark compares, one module each (direct
//! connects need no module: they go to the backends as they are).

pub mod baseline;
pub mod haproxy;
pub mod iptables;
pub mod viking;

/// One way of reaching a service, as measured and reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Setup {
    /// Connects straight to the backends: the physical limit.
    Direct,
    /// Connects to Viking VIPs, rewritten by Viking's `connect4` program.
    Viking,
    /// Connects to VIPs, rewritten by the one-lookup baseline program.
    Baseline,
    /// Connects to VIPs, rewritten by iptables DNAT rules.
    Iptables,
    /// Connects to HAProxy, which connects to a backend.
    Haproxy,
    /// Direct connects from the cgroup Viking is attached to: what Viking's programs cost
    /// a connect that is not to a VIP.
    DirectUnderViking,
}

impl Setup {
    /// Name in tables and the plot.
    pub fn label(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Viking => "Viking",
            Self::Baseline => "baseline program",
            Self::Iptables => "iptables DNAT",
            Self::Haproxy => "HAProxy",
            Self::DirectUnderViking => "direct, Viking attached",
        }
    }
}
