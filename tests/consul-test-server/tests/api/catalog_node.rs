//! `GET /v1/catalog/node/:node` (<https://developer.hashicorp.com/consul/api-docs/catalog#retrieve-map-of-services-for-a-node>):
//! the node and its services by ID, with the highest index of the nodes and services
//! tables (`state.Store.NodeServices`), and `null` for a node that does not exist. A
//! blocking query waits on the node's own record and services (its memdb watch set), so a
//! write on another node moves the index but does not wake it.

use std::time::Duration;

use anyhow::Result;
use consul_test_server::Registration;
use serde_json::json;

use crate::support::start;

#[tokio::test]
async fn lists_a_nodes_services_by_id_and_null_for_an_unknown_node() -> Result<()> {
    let (server, client) = start().await?;
    server.register(Registration::new("n0", "10.0.0.9", "other"))?;
    let missing = client.get("/v1/catalog/node/nowhere").await?;
    assert_eq!((missing.status, missing.json()?), (200, json!(null)), "an unknown node is null, not 404");
    // `nodeServices` returns index 0 for an unknown node; the blocking loop reports it as 1.
    assert_eq!(missing.index(), Some(1), "an unknown node's index is not the tables'");

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
async fn a_write_elsewhere_moves_the_index_but_wakes_only_queries_on_that_node() -> Result<()> {
    let (server, client) = start().await?;
    let registered = server.register(Registration::new("n1", "10.0.0.1", "web").id("web-1"))?;
    let on_another_node = server.register(Registration::new("n2", "10.0.0.2", "db"))?;
    assert!(on_another_node > registered);
    assert_eq!(client.get("/v1/catalog/node/n1").await?.index(), Some(on_another_node), "the tables' index");

    // A query that blocks at an index older than the tables' returns at once (Consul's
    // blocking loop: the result's index is already past `?index=`).
    let stale = client.get(&format!("/v1/catalog/node/n1?index={registered}&wait=5s")).await?;
    assert_eq!(stale.index(), Some(on_another_node));

    let path = format!("/v1/catalog/node/n1?index={on_another_node}&wait=5s");
    let waiting = {
        let client = client.clone();
        tokio::spawn(async move { client.get(&path).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.register(Registration::new("n3", "10.0.0.3", "api"))?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "a service registered on another node does not wake it");
    let here = server.register(Registration::new("n1", "10.0.0.1", "cache").id("cache-1"))?;
    let woken = tokio::time::timeout(Duration::from_secs(2), waiting).await???;
    assert_eq!(woken.index(), Some(here), "a service registered on this node wakes it");
    assert!(woken.json()?["Services"]["cache-1"].is_object());
    Ok(())
}
