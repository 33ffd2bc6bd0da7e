//! The domain: the desired state that every source (static file, Consul, Docker) produces
//! and the reconciler makes the kernel hold, the containers the policy is built for, the map
//! limits, and the checks every source's input goes through, written once. Plain data,
//! already validated; nothing here knows where it came from.

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    net::{IpAddr, SocketAddr},
    sync::Arc,
};

use viking_common::{Algorithm, IPPROTO_TCP, IPPROTO_UDP};

mod checks;
mod claims;
mod container;
mod limits;
mod named;
mod outlier;
mod small_set;

pub use checks::{BackendError, NameError, VipRanges, check_backend_addr, check_backend_of, check_service_name};
pub use claims::{Clash, NameVipClaims};
pub use container::{Container, NomadTask, RuntimeScope};
pub use limits::{LimitError, Limits};
pub use named::{DEFAULT_POLICY_MODES, Named, UnknownName};
pub use outlier::{OutlierDetection, OutlierError, OutlierProblem};
pub use small_set::SmallSet;

/// Transport protocol of a frontend.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP (what a service is when it does not say).
    #[default]
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

/// Serialized in its display form, `240.0.0.10:80/tcp`.
impl serde::Serialize for Frontend {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
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

/// A service name, shared rather than copied: the Consul source, the merge, the
/// reconciler and the DNS table each index services by name, and at 100,000 services a
/// `String` per index was a copy of every name per layer.
pub type ServiceName = std::sync::Arc<str>;

/// One service frontend and the backends it spreads connects over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    /// Human name (config `name`, Consul service name).
    pub name: ServiceName,
    /// Where clients connect.
    pub frontend: Frontend,
    /// How the kernel picks a backend.
    pub algorithm: Algorithm,
    /// Client affinity window in seconds (0 = off): connects from one client cgroup go to
    /// the same backend while it stays in the service and the client keeps connecting.
    pub affinity_secs: u32,
    /// When failing backends are ejected (TCP).
    pub outlier: OutlierDetection,
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

/// One change to what is served at a frontend: what sources send after their first full
/// report, what the merge of all sources produces, and what the reconciler writes. A change
/// costs work for its own frontend only, whatever the number of services.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServiceChange {
    /// Serve this service at its frontend (new, or replacing what was there).
    Upsert(Arc<Service>),
    /// Serve nothing at this frontend any more.
    Remove(Frontend),
}

impl ServiceChange {
    /// The frontend the change is about.
    pub fn frontend(&self) -> Frontend {
        match self {
            Self::Upsert(service) => service.frontend,
            Self::Remove(frontend) => *frontend,
        }
    }
}

/// The services the kernel serves, by frontend and by name: what DNS answers and what
/// container declarations resolve against. Updated change by change.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServedServices {
    by_frontend: BTreeMap<Frontend, Arc<Service>>,
    by_name: HashMap<ServiceName, SmallSet<Frontend>>,
}

impl ServedServices {
    /// Serves `service` at its frontend; returns what was served there before.
    pub fn insert(&mut self, service: Arc<Service>) -> Option<Arc<Service>> {
        let frontend = service.frontend;
        self.by_name.entry(service.name.clone()).or_default().insert(frontend);
        let old = self.by_frontend.insert(frontend, service);
        if let Some(old) = &old {
            self.forget_name(&old.name, frontend);
        }
        old
    }

    /// Stops serving `frontend`; returns what was served there.
    pub fn remove(&mut self, frontend: &Frontend) -> Option<Arc<Service>> {
        let old = self.by_frontend.remove(frontend)?;
        self.forget_name(&old.name, *frontend);
        Some(old)
    }

    fn forget_name(&mut self, name: &str, frontend: Frontend) {
        // A renamed service is indexed under its new name already; keep that entry.
        if self.by_frontend.get(&frontend).is_some_and(|s| &*s.name == name) {
            return;
        }
        if let Some(frontends) = self.by_name.get_mut(name) {
            frontends.remove(&frontend);
            if frontends.is_empty() {
                self.by_name.remove(name);
            }
        }
    }

    /// The service at `frontend`.
    pub fn get(&self, frontend: &Frontend) -> Option<&Arc<Service>> {
        self.by_frontend.get(frontend)
    }

    /// The frontends of the services called `name`.
    pub fn frontends_of(&self, name: &str) -> impl Iterator<Item = Frontend> + '_ {
        self.by_name.get(name).into_iter().flatten().copied()
    }

    /// The service at `vip:port`, either protocol (TCP first).
    pub fn at(&self, vip: IpAddr, port: u16) -> Option<&Arc<Service>> {
        [Protocol::Tcp, Protocol::Udp].into_iter().find_map(|protocol| self.get(&Frontend { vip, port, protocol }))
    }

    /// Every service, by frontend.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Service>> {
        self.by_frontend.values()
    }

    /// Number of frontends served.
    pub fn len(&self) -> usize {
        self.by_frontend.len()
    }

    /// Whether nothing is served.
    pub fn is_empty(&self) -> bool {
        self.by_frontend.is_empty()
    }
}

impl From<&DesiredState> for ServedServices {
    fn from(state: &DesiredState) -> Self {
        let mut served = Self::default();
        for service in state.services.values() {
            served.insert(service.clone());
        }
        served
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(name: &str, vip: &str, port: u16) -> Arc<Service> {
        Arc::new(Service {
            name: name.into(),
            frontend: Frontend { vip: vip.parse().unwrap(), port, protocol: Protocol::Tcp },
            algorithm: Algorithm::RoundRobin,
            affinity_secs: 0,
            outlier: OutlierDetection::default(),
            backends: Vec::new(),
        })
    }

    #[test]
    fn served_services_index_names_through_renames_and_removals() {
        let mut served = ServedServices::default();
        let web80 = service("web", "240.0.0.10", 80);
        served.insert(web80.clone());
        served.insert(service("web", "240.0.0.10", 443));
        assert_eq!(served.frontends_of("web").count(), 2);
        served.insert(service("www", "240.0.0.10", 80));
        assert_eq!(served.frontends_of("web").map(|f| f.port).collect::<Vec<_>>(), [443]);
        assert_eq!(served.frontends_of("www").map(|f| f.port).collect::<Vec<_>>(), [80]);
        assert_eq!(served.remove(&web80.frontend).map(|s| s.name.clone()), Some("www".into()));
        assert_eq!(served.frontends_of("www").count(), 0);
        assert_eq!(served.at("240.0.0.10".parse().unwrap(), 443).map(|s| &*s.name), Some("web"));
        assert_eq!(served.len(), 1);
    }
}
