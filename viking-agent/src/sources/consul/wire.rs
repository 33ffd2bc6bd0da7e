//! The JSON Consul takes and returns, as documented in its HTTP API reference
//! (developer.hashicorp.com/consul/api-docs/catalog#retrieve-map-of-services-for-a-node,
//! /api-docs/health#list-checks-for-node, /api-docs/kv#read-key, /api-docs/txn, /api-docs/agent#read-configuration and
//! /api-docs/catalog#list-nodes). Only the fields Viking reads; unknown fields are ignored.

use std::{collections::BTreeMap, sync::Arc};

use serde::{Deserialize, Serialize};

/// `GET /v1/catalog/node/:node` (developer.hashicorp.com/consul/api-docs/catalog#retrieve-map-of-services-for-a-node):
/// the node and its instances by ID; the answer is `null` when the node does not exist.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NodeServices {
    /// The node.
    pub node: Node,
    /// Its instances: the values of Consul's object keyed by instance ID. The keys repeat
    /// each instance's `ID` and are not decoded: at 100,000 services that is 300,000
    /// strings (and a map) allocated only to be dropped, in the middle of the instances
    /// the agent keeps.
    #[serde(default, deserialize_with = "map_values")]
    pub services: Vec<ServiceInstance>,
}

/// The values of a JSON object (or `null`, as none), in the object's order.
fn map_values<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct Values<T>(std::marker::PhantomData<T>);

    impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Values<T> {
        type Value = Vec<T>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an object or null")
        }

        fn visit_unit<E: serde::de::Error>(self) -> Result<Vec<T>, E> {
            Ok(Vec::new())
        }

        fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Vec<T>, A::Error> {
            let mut values = Vec::with_capacity(map.size_hint().unwrap_or(0));
            while let Some((serde::de::IgnoredAny, value)) = map.next_entry()? {
                values.push(value);
            }
            Ok(values)
        }
    }

    deserializer.deserialize_any(Values(std::marker::PhantomData))
}

/// One element of `GET /v1/health/node/:node` (developer.hashicorp.com/consul/api-docs/health#list-checks-for-node).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NodeCheck {
    /// The instance the check belongs to; empty for the node's own checks.
    #[serde(rename = "ServiceID", default)]
    pub service_id: String,
    /// That instance's service; empty for the node's own checks.
    #[serde(default)]
    pub service_name: String,
    /// `passing`, `warning` or `critical`.
    pub status: String,
}

/// A service instance with its node, as `GET /v1/health/service/<name>` lists them.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthEntry {
    /// The node the instance runs on.
    pub node: Node,
    /// The instance.
    pub service: ServiceInstance,
}

/// A node's name and address.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Node {
    /// Node name.
    pub node: String,
    /// The node's address; used when the instance has none of its own.
    pub address: String,
}

/// One instance of a service. The node view keeps every instance of the cluster (300,000
/// at 100,000 services), so its strings are boxed (no spare capacity) and the service name
/// is shared by the instances of one service (`nodes::NodeView` makes them share it).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceInstance {
    /// Instance id.
    #[serde(rename = "ID")]
    pub id: Box<str>,
    /// Service name.
    pub service: Arc<str>,
    /// Instance address; empty means the node's address.
    #[serde(default)]
    pub address: Box<str>,
    /// Instance port. Signed and wide, so that a bad value is reported, not a parse error.
    #[serde(default)]
    pub port: i64,
    /// Instance metadata (`viking_port`, `viking_protocol`, `viking_algorithm`); boxed,
    /// as most instances keep none (only `viking_*` keys are kept).
    #[serde(default)]
    #[expect(clippy::box_collection, reason = "8 bytes for the usual `None` instead of a map's 24")]
    pub meta: Option<Box<BTreeMap<String, String>>>,
    /// Instance tags.
    #[serde(default)]
    pub tags: Option<Box<[Box<str>]>>,
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

/// `GET /v1/agent/self`: the parts that say which node the agent is.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AgentSelf {
    /// The agent's configuration.
    pub config: AgentConfig,
}

/// `Config` of `/v1/agent/self`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AgentConfig {
    /// The agent's node name: the `Node` of services registered through it.
    pub node_name: String,
}

/// One element of `GET /v1/catalog/nodes`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CatalogNode {
    /// Node name.
    pub node: String,
}

/// One operation of `PUT /v1/txn`: only KV operations are used.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TxnOp {
    /// The KV operation.
    #[serde(rename = "KV")]
    pub kv: TxnKvOp,
}

/// `KV` of a transaction operation.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TxnKvOp {
    /// `cas` (write if the key's ModifyIndex is `index`; 0: only if absent), `get`, ...
    pub verb: &'static str,
    /// The key.
    pub key: String,
    /// Base64 value, for writes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// The index a `cas` or `delete-cas` checks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<u64>,
}

/// The answer of `PUT /v1/txn`: results on success (200), errors on a rollback (409).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TxnResponse {
    /// One result per operation, in order.
    #[serde(default)]
    pub results: Option<Vec<TxnResult>>,
    /// Why the transaction was rolled back: one entry per failed operation.
    #[serde(default)]
    pub errors: Option<Vec<TxnError>>,
}

/// One result of a committed transaction.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TxnResult {
    /// The key as written (written values are not echoed).
    #[serde(rename = "KV")]
    pub kv: Option<KvEntry>,
}

/// One failed operation of a rolled-back transaction.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TxnError {
    /// Index of the operation in the request.
    pub op_index: usize,
    /// Consul's reason.
    pub what: String,
}

#[cfg(test)]
mod tests {
    use super::NodeServices;

    #[test]
    fn a_nodes_instances_are_the_values_of_its_services_object() {
        let node = r#""Node": {"Node": "n1", "Address": "10.0.0.1"}"#;
        let answer: NodeServices = serde_json::from_str(&format!(
            r#"{{{node}, "Services": {{"web-1": {{"ID": "web-1", "Service": "web", "Port": 80}},
                "db-1": {{"ID": "db-1", "Service": "db", "Port": 5432, "Tags": ["a"]}}}}}}"#
        ))
        .unwrap();
        let ids: Vec<&str> = answer.services.iter().map(|i| &*i.id).collect();
        assert_eq!(ids, ["web-1", "db-1"], "in the object's order");
        for empty in [format!(r#"{{{node}, "Services": null}}"#), format!("{{{node}}}")] {
            let answer: NodeServices = serde_json::from_str(&empty).unwrap();
            assert!(answer.services.is_empty(), "{empty}");
        }
        assert!(serde_json::from_str::<NodeServices>(&format!(r#"{{{node}, "Services": []}}"#)).is_err());
    }
}
