//! `GET /v1/health/node/:node` (<https://developer.hashicorp.com/consul/api-docs/health#list-checks-for-node>):
//! the node's checks, its own and its services', with the checks table's index
//! (`state.Store.NodeChecks`: `catalogChecksMaxIndex`); `[]` for a node that does not
//! exist. A blocking query waits on this node's checks only (the watch channel of the
//! checks-by-node iterator).

use std::time::Duration;

use anyhow::Result;
use consul_test_server::{CheckSpec, Registration, Status};
use serde_json::{Value, json};

use crate::support::start;

fn ids(checks: &Value) -> Vec<&str> {
    checks.as_array().into_iter().flatten().filter_map(|c| c["CheckID"].as_str()).collect()
}

#[tokio::test]
async fn lists_the_nodes_checks_by_id_and_nothing_for_an_unknown_node() -> Result<()> {
    let (server, client) = start().await?;
    server.register(
        Registration::new("n1", "10.0.0.1", "web")
            .id("web-1")
            .node_check(CheckSpec::passing("serfHealth"))
            .check(CheckSpec::critical("web-1-check")),
    )?;
    server.register(Registration::new("n2", "10.0.0.2", "web").id("web-2").check(CheckSpec::passing("web-2-check")))?;
    let reply = client.get("/v1/health/node/n1").await?;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.index(), Some(server.index()), "the checks table's index");
    let body = reply.json()?;
    assert_eq!(ids(&body), ["serfHealth", "web-1-check"], "this node's only, by check ID");
    assert_eq!(body[0]["ServiceID"], "", "a node check belongs to no service");
    assert_eq!((body[1]["ServiceID"].as_str(), body[1]["Status"].as_str()), (Some("web-1"), Some("critical")));
    assert_eq!(body[1]["ServiceName"], "web");
    let missing = client.get("/v1/health/node/nowhere").await?;
    assert_eq!((missing.status, missing.json()?), (200, json!([])), "an unknown node has no checks");
    Ok(())
}

#[tokio::test]
async fn a_check_written_elsewhere_moves_the_index_but_wakes_only_queries_on_that_node() -> Result<()> {
    let (server, client) = start().await?;
    server.register(Registration::new("n1", "10.0.0.1", "web").id("web-1").check(CheckSpec::passing("web-1-check")))?;
    server.register(Registration::new("n2", "10.0.0.2", "web").id("web-2").check(CheckSpec::passing("web-2-check")))?;
    let index = client.get("/v1/health/node/n1").await?.index().expect("index");

    let path = format!("/v1/health/node/n1?index={index}&wait=5s");
    let waiting = {
        let client = client.clone();
        tokio::spawn(async move { client.get(&path).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.set_check_status("web-2-check", Status::Critical);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "a check on another node does not wake it");
    let moved = client.get("/v1/health/node/n1").await?.index().expect("index");
    assert!(moved > index, "but it moves the index every node's query reports");

    server.set_check_status("web-1-check", Status::Warning);
    let woken = tokio::time::timeout(Duration::from_secs(2), waiting).await???;
    assert_eq!(woken.index(), Some(server.index()));
    assert_eq!(woken.json()?[0]["Status"], "warning", "a check on this node wakes it");
    Ok(())
}

#[tokio::test]
async fn deregistering_a_service_takes_its_checks_and_wakes_the_nodes_query() -> Result<()> {
    let (server, client) = start().await?;
    server.register(Registration::new("n1", "10.0.0.1", "web").id("web-1").check(CheckSpec::passing("web-1-check")))?;
    let index = client.get("/v1/health/node/n1").await?.index().expect("index");
    let path = format!("/v1/health/node/n1?index={index}&wait=5s");
    let waiting = {
        let client = client.clone();
        tokio::spawn(async move { client.get(&path).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.deregister_service("n1", "web-1")?;
    let woken = tokio::time::timeout(Duration::from_secs(2), waiting).await???;
    assert_eq!(woken.json()?, json!([]));
    Ok(())
}
