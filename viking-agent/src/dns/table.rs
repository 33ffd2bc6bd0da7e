//! The names the responder knows: service name -> VIPs and frontends, built from the
//! desired state so DNS never answers with a VIP the kernel does not serve.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use crate::model::{DesiredState, Protocol};

/// Every service name with its VIPs and frontends. Cheap to rebuild; the run loop
/// publishes a new one after each applied change.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NameTable {
    /// By lower-case name: DNS names are case-insensitive.
    services: BTreeMap<String, NameEntry>,
}

/// What one name resolves to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct NameEntry {
    /// The VIPs (one per name in every source today; a set so a merge never duplicates).
    pub(super) vips: BTreeSet<IpAddr>,
    /// The frontends' protocols and ports, for SRV answers.
    pub(super) ports: BTreeSet<(Protocol, u16)>,
}

impl NameTable {
    /// The names of every service in `state`.
    pub fn from_state(state: &DesiredState) -> Self {
        let mut services: BTreeMap<String, NameEntry> = BTreeMap::new();
        for service in state.services.values() {
            let entry = services.entry(service.name.to_ascii_lowercase()).or_default();
            // A v4-mapped VIP is an IPv4 service (the kernel keys both forms alike), so it
            // gets an A record.
            entry.vips.insert(service.frontend.vip.to_canonical());
            entry.ports.insert((service.frontend.protocol, service.frontend.port));
        }
        Self { services }
    }

    /// The entry of a lower-case name.
    pub(super) fn get(&self, name: &str) -> Option<&NameEntry> {
        self.services.get(name)
    }

    /// Whether some service has a frontend of `protocol` (then `_tcp.service.<domain>`
    /// exists as the parent of SRV names and must not be NXDOMAIN).
    pub(super) fn has_protocol(&self, protocol: Protocol) -> bool {
        self.services.values().any(|entry| entry.ports.iter().any(|(p, _)| *p == protocol))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::tests::state;

    #[test]
    fn one_entry_per_name_with_every_frontend() {
        let table = NameTable::from_state(&state(&[
            ("Web", "240.0.0.10", 80, Protocol::Tcp),
            ("web", "240.0.0.10", 443, Protocol::Tcp),
            ("dns", "::ffff:240.0.0.53", 53, Protocol::Udp),
        ]));
        let web = table.get("web").expect("names are lower-cased");
        assert_eq!(web.vips.iter().collect::<Vec<_>>(), [&"240.0.0.10".parse::<IpAddr>().unwrap()]);
        assert_eq!(web.ports.iter().collect::<Vec<_>>(), [&(Protocol::Tcp, 80), &(Protocol::Tcp, 443)]);
        let dns = table.get("dns").unwrap();
        assert_eq!(dns.vips.first(), Some(&"240.0.0.53".parse::<IpAddr>().unwrap()), "v4-mapped is IPv4");
        assert!(table.has_protocol(Protocol::Udp));
        assert!(table.get("Web").is_none());
    }
}
