//! The JSON Consul returns, as documented in its HTTP API reference
//! (developer.hashicorp.com/consul/api-docs/health#list-service-instances-for-service and
//! /api-docs/kv#read-key). Only the fields Viking reads; unknown fields are ignored.

use std::collections::BTreeMap;

use serde::Deserialize;

/// `GET /v1/catalog/services`: service name -> tags.
pub type CatalogServices = BTreeMap<String, Vec<String>>;

/// One element of `GET /v1/health/service/<name>`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthEntry {
    /// The node the instance runs on.
    pub node: Node,
    /// The instance.
    pub service: ServiceInstance,
}

/// `Node` of a health entry.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Node {
    /// Node name.
    pub node: String,
    /// The node's address; used when the instance has none of its own.
    pub address: String,
}

/// `Service` of a health entry.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceInstance {
    /// Instance id.
    #[serde(rename = "ID")]
    pub id: String,
    /// Service name.
    pub service: String,
    /// Instance address; empty means the node's address.
    #[serde(default)]
    pub address: String,
    /// Instance port. Signed and wide, so that a bad value is reported, not a parse error.
    #[serde(default)]
    pub port: i64,
    /// Instance metadata (`viking_port`, `viking_protocol`, `viking_algorithm`).
    #[serde(default)]
    pub meta: Option<BTreeMap<String, String>>,
    /// Instance tags.
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// Load-balancing weights.
    #[serde(default)]
    pub weights: Option<Weights>,
}

/// `Service.Weights`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Weights {
    /// Weight while all checks pass.
    pub passing: i64,
}

/// One element of `GET /v1/kv/<prefix>?recurse`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct KvEntry {
    /// Full key.
    pub key: String,
    /// Base64 value; `null` when empty.
    #[serde(default)]
    pub value: Option<String>,
    /// Index of the last write, for `?cas=`.
    pub modify_index: u64,
}

impl KvEntry {
    /// The decoded value as UTF-8 text, if it is.
    pub fn text(&self) -> Option<String> {
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD.decode(self.value.as_deref()?).ok()?;
        String::from_utf8(bytes).ok()
    }
}
