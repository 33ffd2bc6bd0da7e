//! Stopping and restarting on the same port; the request log.

use std::time::Duration;

use anyhow::Result;
use consul_test_server::{CheckSpec, Registration};

use crate::support::start;

#[tokio::test]
async fn stop_refuses_connections_and_start_again_keeps_state() -> Result<()> {
    let (server, client) = start().await?;
    let addr = server.addr();
    server.register(Registration::new("n1", "10.0.0.1", "web").check(CheckSpec::passing("c")))?;
    server.kv_put("viking/config", "on");
    let index = client.get("/v1/health/service/web").await?.index().unwrap_or_default();

    // A blocking query in flight is cut off by the stop, as by a crash.
    let waiting = {
        let client = client.clone();
        tokio::spawn(async move { client.get(&format!("/v1/health/service/web?index={index}&wait=5s")).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.stop().await;
    assert!(!server.is_listening());
    assert!(waiting.await?.is_err(), "in-flight request must fail");

    let refused = client.get("/v1/catalog/services").await.expect_err("nothing listens");
    let refused = refused.downcast_ref::<reqwest::Error>().expect("a reqwest error");
    assert!(refused.is_connect(), "{refused}");

    server.start_again().await?;
    assert_eq!(server.addr(), addr);
    let reply = client.get("/v1/health/service/web").await?;
    assert_eq!(reply.index(), Some(index));
    assert_eq!(reply.json()?.as_array().map(Vec::len), Some(1));
    assert_eq!(client.get("/v1/kv/viking/config?raw").await?.text(), "on");
    // Starting again while running is harmless.
    server.start_again().await?;
    Ok(())
}

#[tokio::test]
async fn request_log_records_blocking_parameters() -> Result<()> {
    let (server, client) = start().await?;
    client.get("/v1/health/service/web?passing&index=1&wait=100ms").await?;
    let log = server.request_log();
    assert_eq!(log.len(), 1);
    let record = &log[0];
    assert_eq!(record.method, "GET");
    assert_eq!(record.path, "/v1/health/service/web");
    assert_eq!(record.query, "passing&index=1&wait=100ms");
    assert_eq!(record.index_param.as_deref(), Some("1"));
    assert_eq!(record.wait_param.as_deref(), Some("100ms"));
    assert_eq!(record.token, None);
    server.clear_request_log();
    assert!(server.request_log().is_empty());
    Ok(())
}

#[tokio::test]
async fn unknown_paths_and_methods() -> Result<()> {
    let (_server, client) = start().await?;
    assert_eq!(client.get("/v1/agent/members").await?.status, 404);
    let wrong = client.get("/v1/catalog/register").await?;
    assert_eq!((wrong.status, wrong.text()), (405, "method GET not allowed".to_owned()));
    assert_eq!(client.get("/v1/catalog/datacenters").await?.json()?, serde_json::json!(["dc1"]));
    Ok(())
}
