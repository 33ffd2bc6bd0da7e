//! Consul's JSON wire format: request bodies the server accepts and the
//! response shapes it produces, field for field as Consul's own structs
//! serialize them (`structs.Node`, `structs.NodeService`, `structs.ServiceNode`,
//! `structs.HealthCheck`, `structs.DirEntry`); transactions and
//! `/v1/agent/self` have their own submodules.
//!
//! Request bodies are read with the documented casing only. Consul's decoder
//! is case-insensitive, so anything this server accepts real Consul accepts too.

mod agent;
mod txn;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

pub(crate) use agent::{AgentConfigOut, AgentSelfOut, CoordinateOut, DebugConfigOut, MemberOut};
pub(crate) use txn::{TxnErrorOut, TxnKvOpIn, TxnOpIn, TxnQueryMetaOut, TxnResponseOut, TxnResultOut};

/// A string map as Consul stores it: `None` when the client sent nothing,
/// which Consul serializes as `null`.
pub(crate) type StringMap = BTreeMap<String, String>;

/// Health check status, as in Consul's `Status` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// `passing`
    Passing,
    /// `warning`: still served by plain health queries, dropped by `?passing`.
    Warning,
    /// `critical`
    Critical,
}

impl Status {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Passing => "passing",
            Status::Warning => "warning",
            Status::Critical => "critical",
        }
    }

    /// Parses the wire spelling.
    pub fn parse(text: &str) -> Option<Status> {
        match text {
            "passing" => Some(Status::Passing),
            "warning" => Some(Status::Warning),
            "critical" => Some(Status::Critical),
            _ => None,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// DNS weights of a service instance (`Weights` / `ServiceWeights`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Weights {
    /// Weight while all checks pass.
    pub passing: u32,
    /// Weight while some check warns.
    pub warning: u32,
}

impl Default for Weights {
    /// Consul's default when a registration carries no (or invalid) weights.
    fn default() -> Self {
        Weights { passing: 1, warning: 1 }
    }
}

/// An address/port pair in a service's `TaggedAddresses`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ServiceAddress {
    // The docs' samples spell these in lower case; Consul's Go struct emits
    // them capitalized. Both spellings are accepted on input.
    #[serde(rename = "Address", alias = "address", default)]
    pub address: String,
    #[serde(rename = "Port", alias = "port", default)]
    pub port: u16,
}

/// Body of `PUT /v1/catalog/register`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct RegisterRequest {
    #[serde(rename = "ID")]
    pub id: String,
    pub node: String,
    pub address: String,
    pub datacenter: String,
    pub tagged_addresses: Option<StringMap>,
    pub node_meta: Option<StringMap>,
    pub service: Option<ServiceDefinition>,
    pub check: Option<CheckDefinition>,
    pub checks: Option<Vec<CheckDefinition>>,
    pub skip_node_update: bool,
}

/// The `Service` object of a catalog registration.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct ServiceDefinition {
    pub kind: String,
    #[serde(rename = "ID")]
    pub id: String,
    pub service: String,
    pub tags: Option<Vec<String>>,
    pub address: String,
    pub tagged_addresses: Option<BTreeMap<String, ServiceAddress>>,
    pub meta: Option<StringMap>,
    pub port: u16,
    pub weights: Option<WeightsDefinition>,
    pub enable_tag_override: bool,
}

/// Weights as sent by a client, before Consul's validation.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct WeightsDefinition {
    pub passing: i64,
    pub warning: i64,
}

impl WeightsDefinition {
    /// Consul's `ValidateWeights`: an invalid pair silently becomes the default.
    pub fn validated(&self) -> Weights {
        let in_range = |w: i64| u32::try_from(w).ok().filter(|w| *w <= 65_535);
        match (in_range(self.passing), in_range(self.warning)) {
            (Some(passing), Some(warning)) if passing >= 1 => Weights { passing, warning },
            _ => Weights::default(),
        }
    }
}

/// A `Check` (or element of `Checks`) of a catalog registration.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct CheckDefinition {
    pub node: String,
    #[serde(rename = "CheckID")]
    pub check_id: String,
    pub name: String,
    pub status: String,
    pub notes: String,
    pub output: String,
    #[serde(rename = "ServiceID")]
    pub service_id: String,
    pub r#type: String,
}

/// Body of `PUT /v1/catalog/deregister`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct DeregisterRequest {
    pub node: String,
    pub datacenter: String,
    #[serde(rename = "ServiceID")]
    pub service_id: String,
    #[serde(rename = "CheckID")]
    pub check_id: String,
}

/// Body of `PUT /v1/agent/check/update/:check_id`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct CheckUpdate {
    pub status: String,
    pub output: String,
}

/// `structs.Node` as found in health results.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct NodeOut<'a> {
    #[serde(rename = "ID")]
    pub id: &'a str,
    pub node: &'a str,
    pub address: &'a str,
    pub datacenter: &'a str,
    pub tagged_addresses: Option<&'a StringMap>,
    pub meta: Option<&'a StringMap>,
    pub create_index: u64,
    pub modify_index: u64,
}

/// `structs.ConnectProxyConfig` of a typical (non-proxy) service.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ProxyOut {
    pub mode: &'static str,
    pub mesh_gateway: Empty,
    pub expose: Empty,
}

/// A struct with no fields set, which Consul prints as `{}`.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Empty {}

/// `structs.NodeService`: the `Service` of a health result.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ServiceOut<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    pub kind: &'a str,
    #[serde(rename = "ID")]
    pub id: &'a str,
    pub service: &'a str,
    pub tags: &'a [String],
    pub address: &'a str,
    #[serde(skip_serializing_if = "is_none_or_empty")]
    pub tagged_addresses: Option<&'a BTreeMap<String, ServiceAddress>>,
    pub meta: Option<&'a StringMap>,
    // `Port int json:",omitempty"` in Consul's struct.
    #[serde(skip_serializing_if = "is_zero")]
    pub port: u16,
    pub weights: Weights,
    pub enable_tag_override: bool,
    pub proxy: ProxyOut,
    pub connect: Empty,
    pub create_index: u64,
    pub modify_index: u64,
}

/// `structs.HealthCheck`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct CheckOut<'a> {
    pub node: &'a str,
    #[serde(rename = "CheckID")]
    pub check_id: &'a str,
    pub name: &'a str,
    pub status: Status,
    pub notes: &'a str,
    pub output: &'a str,
    #[serde(rename = "ServiceID")]
    pub service_id: &'a str,
    pub service_name: &'a str,
    pub service_tags: &'a [String],
    pub r#type: &'a str,
    pub interval: &'static str,
    pub timeout: &'static str,
    pub exposed_port: u16,
    pub definition: Empty,
    pub create_index: u64,
    pub modify_index: u64,
}

/// One element of `GET /v1/health/service/:service`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct HealthEntryOut<'a> {
    pub node: NodeOut<'a>,
    pub service: ServiceOut<'a>,
    pub checks: Vec<CheckOut<'a>>,
}

/// `structs.NodeServices`: `GET /v1/catalog/node/:node`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct NodeServicesOut<'a> {
    pub node: NodeOut<'a>,
    pub services: std::collections::BTreeMap<&'a str, ServiceOut<'a>>,
}

/// `structs.ServiceNode`: one element of `GET /v1/catalog/service/:service`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct CatalogServiceOut<'a> {
    #[serde(rename = "ID")]
    pub id: &'a str,
    pub node: &'a str,
    pub address: &'a str,
    pub datacenter: &'a str,
    pub tagged_addresses: Option<&'a StringMap>,
    pub node_meta: Option<&'a StringMap>,
    pub service_kind: &'a str,
    #[serde(rename = "ServiceID")]
    pub service_id: &'a str,
    pub service_name: &'a str,
    pub service_tags: &'a [String],
    pub service_address: &'a str,
    #[serde(skip_serializing_if = "is_none_or_empty")]
    pub service_tagged_addresses: Option<&'a BTreeMap<String, ServiceAddress>>,
    pub service_weights: Weights,
    // Consul clones the map on the way out, so an absent map prints as `{}`.
    pub service_meta: &'a StringMap,
    pub service_port: u16,
    pub service_socket_path: &'static str,
    pub service_enable_tag_override: bool,
    pub service_proxy: ProxyOut,
    pub service_connect: Empty,
    pub create_index: u64,
    pub modify_index: u64,
}

/// `structs.DirEntry`: one element of `GET /v1/kv/:key`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct KvEntryOut<'a> {
    pub lock_index: u64,
    pub key: &'a str,
    pub flags: u64,
    /// Base64 of the value; `null` for an empty value, as Go's nil slice.
    pub value: Option<String>,
    pub create_index: u64,
    pub modify_index: u64,
}

fn is_zero(port: &u16) -> bool {
    *port == 0
}

fn is_none_or_empty<K, V>(map: &Option<&BTreeMap<K, V>>) -> bool {
    map.is_none_or(|map| map.is_empty())
}
