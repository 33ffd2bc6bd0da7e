//! `GET /v1/agent/self` (<https://developer.hashicorp.com/consul/api-docs/agent#read-configuration>):
//! the local agent's configuration and member information. Not a blocking
//! query and not forwarded, so it takes no `?dc`, `?index` or consistency
//! options. It needs `agent:read`, which any token that may read has here.
//!
//! The agent is a Consul server (`Server: true`), the leader of a
//! one-server datacenter; in dev mode it bootstraps itself, as `-dev` does.

use std::collections::BTreeMap;

use crate::http::{HttpError, HttpResponse, json};
use crate::identity::{BUILD_DATE, NODE_ADDRESS, REVISION, SERF_LAN_PORT, SERF_PROTOCOL, SERVER_RPC_PORT, VERSION};
use crate::shared::Shared;
use crate::wire::{AgentConfigOut, AgentSelfOut, CoordinateOut, DebugConfigOut, MemberOut};

/// `serf.StatusAlive`.
const MEMBER_ALIVE: u8 = 1;
/// Consul's own protocol versions (min, current, max), in the member tags.
const CONSUL_PROTOCOL: (u8, u8, u8) = (2, 2, 3);
/// Memberlist delegate protocol versions (min, current, max).
const DELEGATE_PROTOCOL: (u8, u8, u8) = (2, 4, 5);

/// Answers with the `Self` document.
pub(super) fn agent_self(shared: &Shared) -> Result<HttpResponse, HttpError> {
    let identity = &shared.identity;
    let datacenter = shared.datacenter.as_str();
    let bootstrap = identity.dev_mode;
    let (serf_min, serf_current, serf_max) = SERF_PROTOCOL;
    let (delegate_min, delegate_current, delegate_max) = DELEGATE_PROTOCOL;
    json(&AgentSelfOut {
        config: AgentConfigOut {
            datacenter,
            primary_datacenter: datacenter,
            node_name: &identity.node_name,
            node_id: &identity.node_id,
            revision: REVISION,
            server: true,
            version: VERSION,
            build_date: BUILD_DATE,
        },
        debug_config: DebugConfigOut {
            acls_enabled: shared.acl.is_some(),
            bootstrap,
            build_date: BUILD_DATE,
            datacenter,
            dev_mode: identity.dev_mode,
            node_id: &identity.node_id,
            node_name: &identity.node_name,
            primary_datacenter: datacenter,
            revision: REVISION,
            server_mode: true,
            version: VERSION,
            version_metadata: "",
            version_prerelease: "",
        },
        coord: CoordinateOut::default(),
        member: MemberOut {
            name: &identity.node_name,
            addr: NODE_ADDRESS,
            port: SERF_LAN_PORT,
            tags: member_tags(shared),
            status: MEMBER_ALIVE,
            protocol_min: serf_min,
            protocol_max: serf_max,
            protocol_cur: serf_current,
            delegate_min,
            delegate_max,
            delegate_cur: delegate_current,
        },
        stats: stats(shared),
        meta: identity.node_meta(),
    })
}

/// The Serf tags a Consul server gossips (`setupSerf` in Consul's server).
fn member_tags(shared: &Shared) -> BTreeMap<&'static str, String> {
    let (vsn_min, vsn, vsn_max) = CONSUL_PROTOCOL;
    let mut tags = BTreeMap::from([
        ("acls", if shared.acl.is_some() { "1" } else { "0" }.to_owned()),
        ("build", format!("{VERSION}:{REVISION}")),
        ("dc", shared.datacenter.clone()),
        ("ft_fs", "1".to_owned()),
        ("ft_si", "1".to_owned()),
        ("id", shared.identity.node_id.clone()),
        ("port", SERVER_RPC_PORT.to_string()),
        ("raft_vsn", "3".to_owned()),
        ("role", "consul".to_owned()),
        ("segment", String::new()),
        ("vsn", vsn.to_string()),
        ("vsn_max", vsn_max.to_string()),
        ("vsn_min", vsn_min.to_string()),
        ("wan_join_port", "8302".to_owned()),
    ]);
    if shared.identity.dev_mode {
        tags.insert("bootstrap", "1".to_owned());
    }
    tags
}

/// The parts of `Stats` this server can state: the build, and the server's
/// view of its one-node cluster.
fn stats(shared: &Shared) -> BTreeMap<&'static str, BTreeMap<&'static str, String>> {
    let build = BTreeMap::from([
        ("prerelease", String::new()),
        ("revision", REVISION.to_owned()),
        ("version", VERSION.to_owned()),
        ("version_metadata", String::new()),
    ]);
    let consul = BTreeMap::from([
        ("bootstrap", shared.identity.dev_mode.to_string()),
        ("known_datacenters", "1".to_owned()),
        ("leader", "true".to_owned()),
        ("leader_addr", format!("{NODE_ADDRESS}:{SERVER_RPC_PORT}")),
        ("server", "true".to_owned()),
    ]);
    BTreeMap::from([("build", build), ("consul", consul)])
}
