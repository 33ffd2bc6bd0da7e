//! The names the responder knows: service name -> VIPs and frontends, kept in step with
//! what the kernel serves (change by change) so DNS never answers with a VIP the kernel
//! does not serve.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::IpAddr,
};

use crate::model::{DesiredState, Frontend, Protocol, ServiceName, SmallSet};

/// Every service name with its frontends. The run loop updates it as services come, go
/// or are renamed, and publishes it through a `watch` channel.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NameTable {
    /// By lower-case name: DNS names are case-insensitive. (The service's own shared name
    /// when it is lower-case already, as names usually are.)
    services: BTreeMap<ServiceName, NameEntry>,
    /// The lower-case name at each frontend.
    names: HashMap<Frontend, ServiceName>,
    /// Frontends per protocol (for `_tcp`/`_udp` parents of SRV names).
    protocols: BTreeMap<Protocol, usize>,
}

/// What one name resolves to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct NameEntry {
    frontends: SmallSet<Frontend>,
}

impl NameEntry {
    /// The VIPs (one per name in every source today; a set so a merge never duplicates).
    /// A v4-mapped VIP is an IPv4 service (the kernel keys both forms alike), so it gets an
    /// A record.
    pub(super) fn vips(&self) -> BTreeSet<IpAddr> {
        self.frontends.iter().map(|f| f.vip.to_canonical()).collect()
    }

    /// The frontends' protocols and ports, for SRV answers.
    pub(super) fn ports(&self) -> BTreeSet<(Protocol, u16)> {
        self.frontends.iter().map(|f| (f.protocol, f.port)).collect()
    }
}

impl NameTable {
    /// The names of every service in `state`.
    pub fn from_state(state: &DesiredState) -> Self {
        let mut table = Self::default();
        for service in state.services.values() {
            table.set(service.frontend, Some(&service.name));
        }
        table
    }

    /// Records that `frontend` serves the service `name` (`None`: nothing). Returns
    /// whether any answer changes.
    pub fn set(&mut self, frontend: Frontend, name: Option<&ServiceName>) -> bool {
        let name = name.map(lower_case);
        if self.names.get(&frontend) == name.as_ref() {
            return false;
        }
        if let Some(old) = self.names.remove(&frontend) {
            if let Some(count) = self.protocols.get_mut(&frontend.protocol) {
                *count -= 1;
                if *count == 0 {
                    self.protocols.remove(&frontend.protocol);
                }
            }
            if let Some(entry) = self.services.get_mut(&old) {
                entry.frontends.remove(&frontend);
                if entry.frontends.is_empty() {
                    self.services.remove(&old);
                }
            }
        }
        if let Some(name) = name {
            *self.protocols.entry(frontend.protocol).or_default() += 1;
            self.services.entry(name.clone()).or_default().frontends.insert(frontend);
            self.names.insert(frontend, name);
        }
        true
    }

    /// The entry of a lower-case name.
    pub(super) fn get(&self, name: &str) -> Option<&NameEntry> {
        self.services.get(name)
    }

    /// Whether some service has a frontend of `protocol` (then `_tcp.service.<domain>`
    /// exists as the parent of SRV names and must not be NXDOMAIN).
    pub(super) fn has_protocol(&self, protocol: Protocol) -> bool {
        self.protocols.contains_key(&protocol)
    }
}

/// `name` in lower case: the same shared name when it is lower-case already.
fn lower_case(name: &ServiceName) -> ServiceName {
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        name.to_ascii_lowercase().into()
    } else {
        ServiceName::clone(name)
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
        assert_eq!(web.vips().into_iter().collect::<Vec<_>>(), ["240.0.0.10".parse::<IpAddr>().unwrap()]);
        assert_eq!(web.ports().into_iter().collect::<Vec<_>>(), [(Protocol::Tcp, 80), (Protocol::Tcp, 443)]);
        let dns = table.get("dns").unwrap();
        assert_eq!(dns.vips().first(), Some(&"240.0.0.53".parse::<IpAddr>().unwrap()), "v4-mapped is IPv4");
        assert!(table.has_protocol(Protocol::Udp));
        assert!(table.get("Web").is_none());
    }

    #[test]
    fn renames_and_removals_update_the_names_in_place() {
        let mut table = NameTable::from_state(&state(&[
            ("web", "240.0.0.10", 80, Protocol::Tcp),
            ("dns", "240.0.0.53", 53, Protocol::Udp),
        ]));
        let web80 = Frontend { vip: "240.0.0.10".parse().unwrap(), port: 80, protocol: Protocol::Tcp };
        assert!(!table.set(web80, Some(&"WEB".into())), "the same name in another case changes nothing");
        assert!(table.set(web80, Some(&"www".into())));
        assert!(table.get("web").is_none() && table.get("www").is_some());
        let dns = Frontend { vip: "240.0.0.53".parse().unwrap(), port: 53, protocol: Protocol::Udp };
        assert!(table.set(dns, None));
        assert!(!table.has_protocol(Protocol::Udp), "no UDP frontend is left");
        assert_eq!(table, NameTable::from_state(&state(&[("www", "240.0.0.10", 80, Protocol::Tcp)])));
    }
}
