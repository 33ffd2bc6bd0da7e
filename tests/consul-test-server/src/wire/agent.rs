//! `GET /v1/agent/self` (<https://developer.hashicorp.com/consul/api-docs/agent#read-configuration>):
//! the `Self` struct of Consul's `agent_endpoint.go`.

use std::collections::BTreeMap;

use serde::Serialize;

/// The whole answer. Consul leaves out `xDS` when the agent runs no xDS
/// (gRPC) server, as this one does not.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct AgentSelfOut<'a> {
    pub config: AgentConfigOut<'a>,
    pub debug_config: DebugConfigOut<'a>,
    pub coord: CoordinateOut,
    pub member: MemberOut<'a>,
    pub stats: BTreeMap<&'static str, BTreeMap<&'static str, String>>,
    pub meta: BTreeMap<String, String>,
}

/// `Config`: the stable subset of the configuration.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct AgentConfigOut<'a> {
    pub datacenter: &'a str,
    pub primary_datacenter: &'a str,
    pub node_name: &'a str,
    #[serde(rename = "NodeID")]
    pub node_id: &'a str,
    pub revision: &'static str,
    pub server: bool,
    pub version: &'static str,
    pub build_date: &'static str,
}

/// `DebugConfig`: Consul dumps its whole sanitized runtime configuration
/// here (keys sorted, as Go prints a map); this is the part a test server
/// can state truthfully, in the same spelling.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct DebugConfigOut<'a> {
    #[serde(rename = "ACLsEnabled")]
    pub acls_enabled: bool,
    pub bootstrap: bool,
    pub build_date: &'static str,
    pub datacenter: &'a str,
    pub dev_mode: bool,
    #[serde(rename = "NodeID")]
    pub node_id: &'a str,
    pub node_name: &'a str,
    pub primary_datacenter: &'a str,
    pub revision: &'static str,
    pub server_mode: bool,
    pub version: &'static str,
    pub version_metadata: &'static str,
    pub version_prerelease: &'static str,
}

/// `Coord`: a Vivaldi network coordinate (`coordinate.Coordinate`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct CoordinateOut {
    pub vec: [f64; 8],
    pub error: f64,
    pub adjustment: f64,
    pub height: f64,
}

impl Default for CoordinateOut {
    /// `coordinate.NewCoordinate(DefaultConfig())`: what an agent with no
    /// peers to measure keeps.
    fn default() -> Self {
        CoordinateOut { vec: [0.0; 8], error: 1.5, adjustment: 0.0, height: 10.0e-6 }
    }
}

/// `Member`: the agent's own Serf LAN member (`serf.Member`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct MemberOut<'a> {
    pub name: &'a str,
    pub addr: &'static str,
    pub port: u16,
    pub tags: BTreeMap<&'static str, String>,
    /// `serf.MemberStatus`; 1 is alive.
    pub status: u8,
    pub protocol_min: u8,
    pub protocol_max: u8,
    pub protocol_cur: u8,
    pub delegate_min: u8,
    pub delegate_max: u8,
    pub delegate_cur: u8,
}
