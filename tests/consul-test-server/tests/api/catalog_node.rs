//! `GET /v1/catalog/node/:node` (<https://developer.hashicorp.com/consul/api-docs/catalog#retrieve-map-of-services-for-a-node>):
//! the node and its services by ID, with the highest index of the nodes and services
//! tables (`state.Store.NodeServices`), and `null` for a node that does not exist.

use std::time::Duration;

use anyhow::Result;
use consul_test_server::Registration;
use serde_json::json;

use crate::support::start;

#[tokio::test]
async fn lists_a_nodes_services_by_id_and_null_for_an_unknown_node() -> Result<()> {
    let (server, client) = start().await?;
    let missing = client.get("/v1/catalog/node/nowhere").await?;
    assert_eq!((missing.status, missing.json()?), (200, json!(null)), "an unknown node is null, not 404");

    server.register(Registration::new("n1", "10.0.0.1", "web").id("web-1").port(80).tag("v1"))?;
    let last = server.register(Registration::new("n1", "10.0.0.1", "db").id("db-1").port(5432))?;
    server.register(Registration::new("n2", "10.0.0.2", "web").id("web-2").port(80))?;
    let reply = client.get("/v1/catalog/node/n1").await?;
    let body = reply.json()?;
    assert_eq!(body["Node"]["Node"], "n1");
    assert_eq!(body["Node"]["Address"], "10.0.0.1");
    let services = body["Services"].as_object().expect("services by ID");
    assert_eq!(services.keys().collect::<Vec<_>>(), ["db-1", "web-1"], "only this node's");
    assert_eq!(services["web-1"]["Service"], "web");
    assert_eq!(services["web-1"]["Port"], 80);
    assert_eq!(services["web-1"]["Tags"], json!(["v1"]));
    assert_eq!(services["db-1"]["ModifyIndex"], last);
    assert_eq!(reply.index(), Some(server.index()), "a write on another node moves the index too");
    Ok(())
}

#[tokio::test]
async fn the_index_moves_with_a_service_written_on_any_node() -> Result<()> {
    let (server, client) = start().await?;
    let registered = server.register(Registration::new("n1", "10.0.0.1", "web").id("web-1"))?;
    let on_another_node = server.register(Registration::new("n2", "10.0.0.2", "db"))?;
    assert_eq!(client.get("/v1/catalog/node/n1").await?.index(), Some(on_another_node));

    let path = format!("/v1/catalog/node/n1?index={on_another_node}&wait=5s");
    let waiting = {
        let client = client.clone();
        tokio::spawn(async move { client.get(&path).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let elsewhere = server.register(Registration::new("n3", "10.0.0.3", "api"))?;
    let woken = waiting.await??;
    assert_eq!(woken.index(), Some(elsewhere), "a service registered on another node wakes it");
    assert!(elsewhere > registered);
    Ok(())
}
