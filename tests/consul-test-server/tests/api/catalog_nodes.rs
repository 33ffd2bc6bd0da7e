//! `GET /v1/catalog/nodes` (<https://developer.hashicorp.com/consul/api-docs/catalog#list-nodes>):
//! every node, by name, with the nodes table's index (`state.Store.Nodes`).

use std::time::Duration;

use anyhow::Result;
use consul_test_server::Registration;
use serde_json::{Value, json};

use crate::support::start;

fn names(nodes: &Value) -> Vec<String> {
    nodes.as_array().into_iter().flatten().filter_map(|n| n["Node"].as_str().map(str::to_owned)).collect()
}

#[tokio::test]
async fn lists_every_node_sorted_by_name() -> Result<()> {
    let (server, client) = start().await?;
    let empty = client.get("/v1/catalog/nodes").await?;
    assert_eq!((empty.json()?, empty.index()), (json!([]), Some(1)));

    server.register(Registration::new("b-node", "10.0.0.2", "web"))?;
    let created = server.register(Registration::new("A-node", "10.0.0.1", "web"))?;
    server.register(Registration::new("c", "10.0.0.3", "db"))?;
    let reply = client.get("/v1/catalog/nodes").await?;
    let body = reply.json()?;
    // Consul's node index lower-cases names.
    assert_eq!(names(&body), ["A-node", "b-node", "c"]);
    assert_eq!(
        body[0],
        json!({
            "ID": "", "Node": "A-node", "Address": "10.0.0.1", "Datacenter": "dc1",
            "TaggedAddresses": null, "Meta": null, "CreateIndex": created, "ModifyIndex": created
        })
    );
    assert_eq!(reply.index(), Some(server.index()));
    Ok(())
}

#[tokio::test]
async fn the_index_moves_with_nodes_not_services() -> Result<()> {
    let (server, client) = start().await?;
    let created = server.register(Registration::new("n1", "10.0.0.1", "web"))?;
    // Another service on the unchanged node: the nodes table is untouched.
    server.register(Registration::new("n1", "10.0.0.1", "db"))?;
    assert!(server.index() > created);
    let reply = client.get("/v1/catalog/nodes").await?;
    assert_eq!(reply.index(), Some(created));

    let path = format!("/v1/catalog/nodes?index={created}&wait=300ms");
    let (timed_out, _) =
        tokio::join!(client.get(&path), async { server.register(Registration::new("n1", "10.0.0.1", "api")) });
    assert_eq!(timed_out?.index(), Some(created), "a service registration does not wake a nodes query");

    let waiting = {
        let client = client.clone();
        tokio::spawn(async move { client.get(&format!("/v1/catalog/nodes?index={created}&wait=5s")).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let moved = server.register(Registration::new("n1", "10.0.0.9", "web"))?;
    let woken = waiting.await??;
    assert_eq!(woken.index(), Some(moved), "an address change is a node update");
    assert_eq!(woken.json()?[0]["ModifyIndex"], moved);

    let removed = server.deregister_node("n1")?;
    let after = client.get("/v1/catalog/nodes").await?;
    assert_eq!((after.json()?, after.index()), (json!([]), Some(removed)));
    Ok(())
}
