//! `GET /v1/health/state/:state` (<https://developer.hashicorp.com/consul/api-docs/health#list-checks-in-state>):
//! checks by status, with the checks table's index (`ChecksInState`).

use std::time::{Duration, Instant};

use anyhow::Result;
use consul_test_server::{CheckSpec, Registration, Status};
use serde_json::{Value, json};

use crate::support::start;

fn ids(checks: &Value) -> Vec<String> {
    checks.as_array().into_iter().flatten().filter_map(|c| c["CheckID"].as_str().map(str::to_owned)).collect()
}

async fn seeded() -> Result<(consul_test_server::ConsulTestServer, crate::support::Client)> {
    let (server, client) = start().await?;
    server.register(
        Registration::new("node-b", "10.0.0.2", "web")
            .id("web-2")
            .tag("v1")
            .node_check(CheckSpec::passing("serfHealth"))
            .check(CheckSpec::critical("web-2-check")),
    )?;
    server.register(
        Registration::new("node-a", "10.0.0.1", "web")
            .id("web-1")
            .check(CheckSpec::warning("web-1-check").output("slow"))
            .check(CheckSpec::passing("Web-1-alive")),
    )?;
    Ok((server, client))
}

#[tokio::test]
async fn lists_checks_by_state_in_node_then_id_order() -> Result<()> {
    let (server, client) = seeded().await?;
    let any = client.get("/v1/health/state/any").await?;
    assert_eq!(any.status, 200);
    assert_eq!(any.index(), Some(server.index()));
    let body = any.json()?;
    // Ordered by node, then check ID, case-insensitively, as Consul's id index.
    assert_eq!(ids(&body), ["Web-1-alive", "web-1-check", "serfHealth", "web-2-check"]);
    // The same check JSON as in health service entries.
    let entries = client.get("/v1/health/service/web").await?.json()?;
    let in_entries: Vec<Value> = entries
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|e| e["Checks"].as_array().cloned().unwrap_or_default())
        .collect();
    for check in body.as_array().into_iter().flatten() {
        assert!(in_entries.contains(check), "{check}");
    }
    assert_eq!(body[2]["ServiceTags"], json!([]), "node checks have no service");
    assert_eq!(body[3]["ServiceTags"], json!(["v1"]));

    for (state, expected) in [
        ("passing", vec!["Web-1-alive", "serfHealth"]),
        ("warning", vec!["web-1-check"]),
        ("critical", vec!["web-2-check"]),
        // Consul's status index lower-cases the state.
        ("CRITICAL", vec!["web-2-check"]),
    ] {
        let reply = client.get(&format!("/v1/health/state/{state}")).await?;
        assert_eq!(ids(&reply.json()?), expected, "{state}");
        assert_eq!(reply.index(), any.index(), "{state}: the checks table's index");
    }
    Ok(())
}

#[tokio::test]
async fn unknown_states_are_empty_and_a_missing_one_is_refused() -> Result<()> {
    let (_server, client) = seeded().await?;
    // Consul does not validate the state (hashicorp/consul#757).
    let unknown = client.get("/v1/health/state/unknown").await?;
    assert_eq!((unknown.status, unknown.json()?), (200, json!([])));
    assert!(unknown.index().is_some());
    let missing = client.get("/v1/health/state/").await?;
    assert_eq!((missing.status, missing.text()), (400, "Missing check state".to_owned()));
    Ok(())
}

#[tokio::test]
async fn the_index_is_the_checks_tables() -> Result<()> {
    let (server, client) = seeded().await?;
    let index = client.get("/v1/health/state/any").await?.index().unwrap_or_default();
    // Neither a service without checks nor a KV write touches the checks table.
    server.register(Registration::new("node-c", "10.0.0.3", "db"))?;
    server.kv_put("k", "v");
    assert_eq!(client.get("/v1/health/state/critical").await?.index(), Some(index));

    let waiting = {
        let client = client.clone();
        tokio::spawn(async move { client.get(&format!("/v1/health/state/passing?index={index}&wait=5s")).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(server.set_check_status("web-2-check", Status::Passing), 1);
    let woken = waiting.await??;
    assert_eq!(woken.index(), Some(server.index()));
    assert_eq!(ids(&woken.json()?), ["Web-1-alive", "serfHealth", "web-2-check"]);

    let removed = server.deregister_service("node-a", "web-1")?;
    let after = client.get("/v1/health/state/any").await?;
    assert_eq!(
        (ids(&after.json()?), after.index()),
        (vec!["serfHealth".to_owned(), "web-2-check".to_owned()], Some(removed))
    );
    Ok(())
}

#[tokio::test]
async fn a_global_watch_over_ten_thousand_services_renders_quickly() -> Result<()> {
    let (server, client) = start().await?;
    server.register_many((0..10_000).map(|n| {
        Registration::new(format!("host-{}", n % 100), format!("10.0.{}.{}", n / 250, n % 250), format!("svc-{n}"))
            .check(CheckSpec::passing(format!("c-{n}")))
    }))?;
    let started = Instant::now();
    let any = client.get("/v1/health/state/any").await?;
    let elapsed = started.elapsed();
    assert_eq!(any.json()?.as_array().map(Vec::len), Some(10_000));
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    Ok(())
}
