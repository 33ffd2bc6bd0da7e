//! The typed view of the pinned maps that `maps dump` shows: what `--json` prints as it is,
//! and what the table, `env` and `status` are made from.

use std::{
    fmt,
    net::{IpAddr, SocketAddr},
};

use serde::Serialize;
use viking_common::{Algorithm, PolicyMode};

use crate::model::{Frontend, OutlierDetection, Protocol};

/// One service in the dump.
#[derive(Debug, Serialize)]
pub struct DumpedService {
    /// Service name.
    pub name: String,
    /// Virtual IP.
    pub vip: IpAddr,
    /// Virtual port.
    pub port: u16,
    /// The protocol of its map key.
    pub protocol: KeyProtocol,
    /// Backend selection.
    pub algorithm: Algorithm,
    /// Index into the per-service arrays.
    pub service_id: u32,
    /// Client affinity window in seconds (0 = off).
    pub affinity_seconds: u32,
    /// Distinct backends, in order of their first slot (`None`: a slot names a backend id
    /// that has no address).
    pub backends: Vec<Option<SocketAddr>>,
    /// Backend slots (more than `backends` when weighted).
    pub slots: usize,
    /// Per backend: weight (slots held) and counters.
    pub backend_stats: Vec<DumpedBackend>,
    /// When failing backends are ejected.
    pub outlier: DumpedOutlier,
    /// Counters summed over CPUs.
    pub stats: DumpedStats,
}

/// The protocol in a `SERVICES` key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum KeyProtocol {
    /// TCP or UDP, the protocols this agent writes (`"tcp"`, `"udp"`).
    Served(Protocol),
    /// Any other IP protocol number, which only another writer can have put there: shown
    /// as it is, since the dump is for finding out what the kernel holds.
    Other(u8),
}

impl From<u8> for KeyProtocol {
    fn from(number: u8) -> Self {
        Protocol::from_number(number).map_or(Self::Other(number), Self::Served)
    }
}

impl fmt::Display for KeyProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Served(protocol) => protocol.fmt(f),
            Self::Other(number) => number.fmt(f),
        }
    }
}

/// One backend of a service in the dump.
#[derive(Debug, Serialize)]
pub struct DumpedBackend {
    /// Its address (`None`: a slot names a backend id that has no address).
    pub address: Option<SocketAddr>,
    /// Slots it holds in this service.
    pub weight: u16,
    /// Connects sent to it (by every service it belongs to).
    pub connects: u64,
    /// Open connections, counted for `least_conn` services.
    pub active: u64,
    /// Milliseconds the backend stays ejected (`None`: it is not).
    pub ejected_for_ms: Option<u64>,
    /// Connects that failed since its last success.
    pub consecutive_failures: u64,
    /// TCP connects that failed (refused, reset, SYN timed out).
    pub failures: u64,
    /// Times it was ejected.
    pub ejections: u64,
    /// Connects that chose it while ejected and went to another backend.
    pub skipped: u64,
}

/// A service's outlier ejection settings in the dump.
#[derive(Debug, Serialize)]
pub struct DumpedOutlier {
    /// Failures in a row that eject a backend (0 = off).
    pub consecutive_failures: u16,
    /// The first ejection, in seconds.
    pub ejection_seconds: u32,
    /// The longest ejection, in seconds.
    pub max_ejection_seconds: u32,
    /// The largest share of backends ejected at once, in percent.
    pub max_ejection_percent: u8,
}

impl From<OutlierDetection> for DumpedOutlier {
    fn from(outlier: OutlierDetection) -> Self {
        Self {
            consecutive_failures: outlier.consecutive_failures,
            ejection_seconds: outlier.ejection_secs,
            max_ejection_seconds: outlier.max_ejection_secs,
            max_ejection_percent: outlier.max_ejection_percent,
        }
    }
}

/// Per-service counters.
#[derive(Debug, Serialize)]
pub struct DumpedStats {
    /// Connects sent to a backend.
    pub redirected: u64,
    /// Connects refused for lack of a backend.
    pub refused_no_backend: u64,
    /// Connects refused by a container's `enforce` policy.
    pub refused_by_policy: u64,
}

/// The whole dump, as printed by `--json`.
#[derive(Debug, Serialize)]
pub struct Dump {
    /// The layout version of the pins.
    pub layout: u32,
    /// Every service, by VIP, port and protocol.
    pub services: Vec<DumpedService>,
    /// Every container (cgroup) with a policy or port overlays.
    pub policy: Vec<DumpedPolicy>,
    /// The backstop for containers without an entry yet, when it is on.
    pub container_scope: Option<DumpedScope>,
}

/// The backstop in the dump.
#[derive(Debug, Serialize)]
pub struct DumpedScope {
    /// Cgroup id of the container runtime's parent cgroup.
    pub parent_cgroup_id: u64,
    /// Its level in the cgroup hierarchy.
    pub parent_level: u32,
    /// The mode of its child cgroups that have no entry.
    pub mode: PolicyMode,
    /// VIP connects from such cgroups refused (`enforce`).
    pub refused: u64,
    /// VIP connects from such cgroups allowed and reported (`audit`).
    pub audited: u64,
}

/// One container's policy in the dump.
#[derive(Debug, Default, Serialize)]
pub struct DumpedPolicy {
    /// The container's cgroup id.
    pub cgroup_id: u64,
    /// `off`, `audit`, `enforce` or `bypass`.
    pub mode: PolicyMode,
    /// VIPs it declared.
    pub allowed: Vec<IpAddr>,
    /// Its port overlays on the ambassador address.
    pub overlays: Vec<DumpedOverlay>,
}

/// One port overlay in the dump.
#[derive(Debug, Serialize)]
pub struct DumpedOverlay {
    /// Port on the ambassador address.
    pub port: u16,
    /// `tcp` or `udp`.
    pub protocol: Protocol,
    /// The service frontend it leads to.
    pub frontend: Frontend,
}
