//! Who the server says it is: its node name and ID, the Consul version it
//! reports, and, in dev mode, the catalog entry a Consul server agent makes
//! of itself (`consul agent -dev`: its node with the `serfHealth` check and
//! the `consul` service, as the leader's `handleAliveMember` registers it).

use std::collections::BTreeMap;

use crate::wire::{CheckDefinition, RegisterRequest, ServiceDefinition};

/// The Consul version this server reports.
pub(crate) const VERSION: &str = "1.21.0";
/// The build revision reported next to [`VERSION`]; real builds give a git
/// commit, this names the test server so logs say what answered.
pub(crate) const REVISION: &str = "consul-test-server";
/// The build date reported next to [`VERSION`] (RFC 3339).
pub(crate) const BUILD_DATE: &str = "2025-05-01T00:00:00Z";
/// The address the server's own node has: it only listens on loopback.
pub(crate) const NODE_ADDRESS: &str = "127.0.0.1";
/// Consul's server RPC port, which the `consul` service advertises.
pub(crate) const SERVER_RPC_PORT: u16 = 8300;
/// Consul's Serf LAN port, which the agent's member entry carries.
pub(crate) const SERF_LAN_PORT: u16 = 8301;
/// Serf protocol versions (min, current, max) a current Consul speaks.
pub(crate) const SERF_PROTOCOL: (u8, u8, u8) = (1, 2, 5);

/// The local agent's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identity {
    /// The node name (`-node`).
    pub node_name: String,
    /// The node ID, a random UUID as a fresh `-dev` agent generates.
    pub node_id: String,
    /// Whether the server behaves like `consul agent -dev`.
    pub dev_mode: bool,
}

impl Identity {
    /// An identity with a fresh node ID.
    pub(crate) fn new(node_name: String, dev_mode: bool) -> Self {
        Identity { node_name, node_id: random_uuid(), dev_mode }
    }

    /// The node metadata a Consul agent syncs for itself.
    pub(crate) fn node_meta(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("consul-network-segment".to_owned(), String::new()),
            ("consul-version".to_owned(), VERSION.to_owned()),
        ])
    }

    /// The registration of this server's own node: the node as the agent's
    /// anti-entropy sync writes it, with the `serfHealth` check and the
    /// `consul` service the leader adds for every live server.
    pub(crate) fn self_registration(&self, datacenter: &str) -> RegisterRequest {
        let tagged = ["lan", "lan_ipv4", "wan", "wan_ipv4"].map(|tag| (tag.to_owned(), NODE_ADDRESS.to_owned()));
        let (serf_min, serf_current, serf_max) = SERF_PROTOCOL;
        let service_meta = [
            ("non_voter", "false".to_owned()),
            ("raft_version", "3".to_owned()),
            ("read_replica", "false".to_owned()),
            ("serf_protocol_current", serf_current.to_string()),
            ("serf_protocol_max", serf_max.to_string()),
            ("serf_protocol_min", serf_min.to_string()),
            ("version", VERSION.to_owned()),
        ]
        .map(|(key, value)| (key.to_owned(), value));
        RegisterRequest {
            id: self.node_id.clone(),
            node: self.node_name.clone(),
            address: NODE_ADDRESS.to_owned(),
            datacenter: datacenter.to_owned(),
            tagged_addresses: Some(BTreeMap::from(tagged)),
            node_meta: Some(self.node_meta()),
            service: Some(ServiceDefinition {
                id: "consul".to_owned(),
                service: "consul".to_owned(),
                port: SERVER_RPC_PORT,
                meta: Some(BTreeMap::from(service_meta)),
                ..ServiceDefinition::default()
            }),
            check: Some(CheckDefinition {
                check_id: "serfHealth".to_owned(),
                name: "Serf Health Status".to_owned(),
                status: "passing".to_owned(),
                output: "Agent alive and reachable".to_owned(),
                ..CheckDefinition::default()
            }),
            ..RegisterRequest::default()
        }
    }
}

/// A random version-4 UUID in Consul's 8-4-4-4-12 layout.
fn random_uuid() -> String {
    let mut bytes: [u8; 16] = fastrand::u128(..).to_be_bytes();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
}

#[cfg(test)]
mod tests {
    use super::random_uuid;

    #[test]
    fn node_ids_are_uuids() {
        let id = random_uuid();
        let lengths: Vec<usize> = id.split('-').map(str::len).collect();
        assert_eq!(lengths, [8, 4, 4, 4, 12], "{id}");
        assert_ne!(id, random_uuid());
    }
}
