//! The desired state: what every source (static file, Consul, Docker) produces and what the
//! reconciler makes the kernel hold. Plain data, already validated.

use std::{
    collections::BTreeMap,
    fmt,
    net::{IpAddr, SocketAddr},
    sync::Arc,
};

use viking_common::{Algorithm, IPPROTO_TCP, IPPROTO_UDP};

/// Transport protocol of a frontend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP (connected sockets through `connect4`).
    Udp,
}

impl Protocol {
    /// The IP protocol number used in map keys.
    pub const fn number(self) -> u8 {
        match self {
            Self::Tcp => IPPROTO_TCP,
            Self::Udp => IPPROTO_UDP,
        }
    }

    /// The protocol of an IP protocol number, if Viking serves it.
    pub const fn from_number(number: u8) -> Option<Self> {
        match number {
            IPPROTO_TCP => Some(Self::Tcp),
            IPPROTO_UDP => Some(Self::Udp),
            _ => None,
        }
    }

    /// Lower-case name, as in the config file.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a client connects to: a virtual IP, a port and a protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Frontend {
    /// The virtual service IP.
    pub vip: IpAddr,
    /// The port clients use.
    pub port: u16,
    /// TCP or UDP.
    pub protocol: Protocol,
}

impl fmt::Display for Frontend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", SocketAddr::new(self.vip, self.port), self.protocol)
    }
}

/// One backend of a service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BackendSpec {
    /// Where connects go.
    pub addr: SocketAddr,
    /// Relative share of connects for the `weighted` algorithm (1..=`MAX_WEIGHT`); other
    /// algorithms ignore it.
    pub weight: u16,
}

impl BackendSpec {
    /// Largest accepted weight.
    pub const MAX_WEIGHT: u16 = 1000;

    /// A backend of weight 1.
    pub const fn new(addr: SocketAddr) -> Self {
        Self { addr, weight: 1 }
    }
}

impl fmt::Display for BackendSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.weight == 1 { write!(f, "{}", self.addr) } else { write!(f, "{} (weight {})", self.addr, self.weight) }
    }
}

/// One service frontend and the backends it spreads connects over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    /// Human name (config `name`, Consul service name).
    pub name: String,
    /// Where clients connect.
    pub frontend: Frontend,
    /// How the kernel picks a backend.
    pub algorithm: Algorithm,
    /// Client affinity window in seconds (0 = off): connects from one client cgroup go to
    /// the same backend while it stays in the service and the client keeps connecting.
    pub affinity_secs: u32,
    /// Distinct backends, in a stable order. May be empty: connects are then refused at once.
    pub backends: Vec<BackendSpec>,
}

/// The full desired state of one host: every service frontend it must serve.
///
/// Services are shared (`Arc`): sources keep the services that did not change between two
/// snapshots, so merging and comparing a large state costs pointer copies and pointer
/// comparisons, not deep copies.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DesiredState {
    /// Services by frontend.
    pub services: BTreeMap<Frontend, Arc<Service>>,
}

impl DesiredState {
    /// Adds (or replaces) a service.
    pub fn insert(&mut self, service: Service) {
        self.services.insert(service.frontend, Arc::new(service));
    }
}
