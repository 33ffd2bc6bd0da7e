//! Blocking queries: `?index=` / `?wait=` semantics and `X-Consul-Index`.

use std::time::{Duration, Instant};

use anyhow::Result;
use consul_test_server::{CheckSpec, Registration, Status};

use crate::support::start;

fn web(node: &str, address: &str) -> Registration {
    Registration::new(node, address, "web").port(8080).check(CheckSpec::passing(format!("{node}-web")))
}

#[tokio::test]
async fn without_index_answers_at_once() -> Result<()> {
    let (server, client) = start().await?;
    server.register(web("host-a", "10.0.0.1"))?;
    for query in ["", "?wait=5s", "?index=0&wait=5s"] {
        let started = Instant::now();
        let reply = client.get(&format!("/v1/health/service/web{query}")).await?;
        assert_eq!(reply.status, 200);
        assert!(started.elapsed() < Duration::from_secs(2), "{query} blocked");
        assert_eq!(reply.index(), Some(server.index()));
        assert_eq!(reply.headers["x-consul-knownleader"], "true");
        assert_eq!(reply.headers["x-consul-lastcontact"], "0");
    }
    Ok(())
}

#[tokio::test]
async fn blocks_until_a_change_and_returns_the_new_index() -> Result<()> {
    let (server, client) = start().await?;
    server.register(web("host-a", "10.0.0.1"))?;
    let first = client.get("/v1/health/service/web").await?;
    let index = first.index().unwrap_or_default();

    let waiting = {
        let client = client.clone();
        tokio::spawn(async move { client.get(&format!("/v1/health/service/web?index={index}&wait=5s")).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiting.is_finished(), "returned before any change");

    let started = Instant::now();
    let write_index = server.register(web("host-b", "10.0.0.2"))?;
    let reply = waiting.await??;
    assert!(started.elapsed() < Duration::from_secs(2), "woke too late");
    assert_eq!(reply.index(), Some(write_index));
    assert!(write_index > index);
    assert_eq!(reply.json()?.as_array().map(Vec::len), Some(2));
    Ok(())
}

#[tokio::test]
async fn times_out_after_wait_with_the_same_index() -> Result<()> {
    let (server, client) = start().await?;
    server.register(web("host-a", "10.0.0.1"))?;
    let index = client.get("/v1/health/service/web").await?.index().unwrap_or_default();

    // A write to another service during the wait must not end it.
    let path = format!("/v1/health/service/web?index={index}&wait=400ms");
    let started = Instant::now();
    let (reply, other) = tokio::join!(client.get(&path), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        server.register(Registration::new("host-c", "10.0.0.3", "db"))
    });
    let elapsed = started.elapsed();
    let (reply, _) = (reply?, other?);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.index(), Some(index));
    // wait plus at most wait/16 of jitter, with slack for a busy machine.
    assert!(elapsed >= Duration::from_millis(400), "{elapsed:?}");
    assert!(elapsed < Duration::from_millis(1500), "{elapsed:?}");
    Ok(())
}

#[tokio::test]
async fn check_status_changes_wake_health_queries() -> Result<()> {
    let (server, client) = start().await?;
    server.register(web("host-a", "10.0.0.1"))?;
    let index = client.get("/v1/health/service/web?passing").await?.index().unwrap_or_default();
    let waiting = {
        let client = client.clone();
        tokio::spawn(async move { client.get(&format!("/v1/health/service/web?passing&index={index}&wait=5s")).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(server.set_check_status("host-a-web", Status::Critical), 1);
    let reply = waiting.await??;
    assert!(reply.index() > Some(index));
    assert_eq!(reply.json()?, serde_json::json!([]));
    Ok(())
}

#[tokio::test]
async fn catalog_services_and_kv_block_too() -> Result<()> {
    let (server, client) = start().await?;
    let services_index = client.get("/v1/catalog/services").await?.index().unwrap_or_default();
    assert!(services_index >= 1, "an empty catalog still reports index >= 1");
    let key_index = client.get("/v1/kv/config/a").await?.index().unwrap_or_default();

    let services = {
        let client = client.clone();
        tokio::spawn(async move { client.get(&format!("/v1/catalog/services?index={services_index}&wait=5s")).await })
    };
    let key = {
        let client = client.clone();
        tokio::spawn(async move { client.get(&format!("/v1/kv/config/a?index={key_index}&wait=5s")).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.register(web("host-a", "10.0.0.1"))?;
    server.kv_put("config/a", "1");

    let services = services.await??;
    assert!(services.index() > Some(services_index));
    assert_eq!(services.json()?, serde_json::json!({"web": []}));
    let key = key.await??;
    assert_eq!(key.status, 200);
    assert!(key.index() > Some(key_index));
    Ok(())
}

#[tokio::test]
async fn index_goes_backwards_after_reset() -> Result<()> {
    let (server, client) = start().await?;
    for n in 0..5 {
        server.register(web(&format!("host-{n}"), &format!("10.0.0.{n}")))?;
    }
    let before = client.get("/v1/health/service/web").await?.index().unwrap_or_default();
    assert!(before >= 5);

    // A query blocked at the old index is released by the reset.
    let waiting = {
        let client = client.clone();
        tokio::spawn(async move { client.get(&format!("/v1/health/service/web?index={before}&wait=5s")).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    server.reset_index_to(1);
    let released = waiting.await??;
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(released.index(), Some(1));

    let after = client.get("/v1/health/service/web").await?;
    assert_eq!(after.index(), Some(1));
    assert_eq!(after.json()?.as_array().map(Vec::len), Some(5), "data survives the reset");
    // Writes continue from the reset index.
    assert_eq!(server.register(web("host-new", "10.0.0.9"))?, 2);
    Ok(())
}

#[tokio::test]
async fn malformed_blocking_parameters_are_rejected() -> Result<()> {
    let (_server, client) = start().await?;
    let wait = client.get("/v1/health/service/web?index=1&wait=soon").await?;
    assert_eq!((wait.status, wait.text()), (400, "Invalid wait time".to_owned()));
    let index = client.get("/v1/health/service/web?index=-1").await?;
    assert_eq!((index.status, index.text()), (400, "Invalid index".to_owned()));
    let both = client.get("/v1/health/service/web?stale&consistent").await?;
    assert_eq!(both.status, 400);
    Ok(())
}
