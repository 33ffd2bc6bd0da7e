//! The first read of the whole catalog in a few requests, instead of one health query per
//! service: every node's services (`/v1/catalog/node/:node`), the checks that do not pass
//! (`/v1/health/state/critical` and `/warning`), and from them each service's passing
//! instances, as `/v1/health/service/:name?passing` would list them (an instance passes
//! when none of its checks and none of its node's checks is critical or warning,
//! developer.hashicorp.com/consul/api-docs/health#passing).
//!
//! A cluster has far fewer nodes than services (10,000 services on 64 nodes here), so the
//! initial sync costs tens of requests, not tens of thousands. Each service's blocking
//! health query then starts at [`Snapshot::index`] and comes back only when the service
//! changed after it was read.
//!
//! Why that index is safe: each read's `X-Consul-Index` is at most the Raft index when it
//! was answered, so any write after a read has a higher index than that read's; the
//! smallest of them is below every write this snapshot may have missed, and a service's
//! health query returns once the service's own index passes it (its instances, their
//! checks or their node changed). The node list itself is read before and after: if the
//! nodes table moved (a node joined, left or changed meanwhile), the snapshot is not used;
//! if it did not, the list held for the whole read, and the nodes table's index (which
//! moves only with nodes, so may be far behind) need not bound the rest.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use serde::Deserialize;
use tokio::{sync::Semaphore, task::JoinSet};

use super::{
    client::{ConsulClient, ConsulError},
    wire::{CatalogNode, HealthEntry, Node, ServiceInstance},
};

/// Node reads running at once.
const CONCURRENCY: usize = 16;
/// The check states that keep an instance out of `?passing` answers.
const NOT_PASSING: [&str; 2] = ["critical", "warning"];

/// Every service's passing instances, read at once.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// The index the services' health queries start blocking at.
    pub index: u64,
    /// Passing instances by service name; a service without one is absent.
    pub services: HashMap<String, Vec<HealthEntry>>,
}

/// `GET /v1/catalog/node/:node` (developer.hashicorp.com/consul/api-docs/catalog#retrieve-map-of-services-for-a-node):
/// `null` when the node does not exist (any more).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct NodeServices {
    node: Node,
    #[serde(default)]
    services: Option<BTreeMap<String, ServiceInstance>>,
}

/// One element of `GET /v1/health/state/:state`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Check {
    node: String,
    /// Empty for a node's own checks (which hold every service on the node).
    #[serde(rename = "ServiceID", default)]
    service_id: String,
}

/// Reads the snapshot. `Ok(None)`: the node list moved while it was read (ask per service
/// instead).
pub async fn read(client: &ConsulClient) -> Result<Option<Snapshot>, ConsulError> {
    let (nodes, nodes_index) = read_nodes(client).await?;
    let mut reads = JoinSet::new();
    let slots = Arc::new(Semaphore::new(CONCURRENCY));
    for name in nodes {
        let (client, slots) = (client.clone(), slots.clone());
        reads.spawn(async move {
            let _slot = slots.acquire_owned().await;
            client.get::<Option<NodeServices>>(&format!("/v1/catalog/node/{}", path_segment(&name)), &[], None).await
        });
    }
    let mut index = u64::MAX;
    let mut instances = Vec::new();
    while let Some(read) = reads.join_next().await {
        let answer = read.map_err(|err| ConsulError::Setup(format!("a catalog node read failed: {err}")))??;
        // A node gone since the listing: nothing to add, and its index says nothing.
        let Some(Some(node)) = answer.body else { continue };
        index = index.min(answer.index);
        instances.extend(
            node.services.into_iter().flatten().map(|(_, service)| HealthEntry { node: node.node.clone(), service }),
        );
    }
    // Node → service IDs with a check that does not pass ("" for the node's own checks).
    let mut failing: HashMap<String, HashSet<String>> = HashMap::new();
    for state in NOT_PASSING {
        let answer = client.get::<Vec<Check>>(&format!("/v1/health/state/{state}"), &[], None).await?;
        index = index.min(answer.index);
        for check in answer.body.into_iter().flatten() {
            failing.entry(check.node).or_default().insert(check.service_id);
        }
    }
    if read_nodes(client).await?.1 != nodes_index {
        return Ok(None);
    }
    let mut services: HashMap<String, Vec<HealthEntry>> = HashMap::new();
    for entry in instances {
        let failing_here = failing.get(&entry.node.node);
        if failing_here.is_some_and(|ids| ids.contains("") || ids.contains(&entry.service.id)) {
            continue;
        }
        services.entry(entry.service.service.clone()).or_default().push(entry);
    }
    Ok(Some(Snapshot { index: index.max(1), services }))
}

/// The node names and the nodes table's index.
async fn read_nodes(client: &ConsulClient) -> Result<(Vec<String>, u64), ConsulError> {
    let answer = client.get::<Vec<CatalogNode>>("/v1/catalog/nodes", &[], None).await?;
    Ok((answer.body.into_iter().flatten().map(|node| node.node).collect(), answer.index))
}

/// A node name as one URL path segment (node names are DNS-like, but nothing enforces it).
fn path_segment(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::path_segment;

    #[test]
    fn node_names_are_escaped_as_one_path_segment() {
        assert_eq!(path_segment("node-1.dc1"), "node-1.dc1");
        assert_eq!(path_segment("a/b c"), "a%2Fb%20c");
    }
}
