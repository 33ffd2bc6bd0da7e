//! `open_connections()` and `open_blocking_queries()`, the counters
//! benchmarks read while the server runs.

use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use consul_test_server::Registration;

use crate::support::{Client, start};

/// Polls `probe` until it holds, for at most five seconds.
async fn eventually(what: &str, probe: impl Fn() -> bool) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !probe() {
        ensure!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

#[tokio::test]
async fn connections_are_counted_while_open() -> Result<()> {
    let (server, client) = start().await?;
    assert_eq!(server.open_connections(), 0);
    // reqwest keeps the HTTP/1.1 connection alive between requests.
    client.get("/v1/status/leader").await?;
    client.get("/v1/status/leader").await?;
    eventually("one connection is open", || server.open_connections() == 1).await?;

    let other = Client::new(server.http_addr())?;
    other.get("/v1/status/leader").await?;
    eventually("two connections are open", || server.open_connections() == 2).await?;
    drop(other);
    eventually("the dropped client's connection is closed", || server.open_connections() == 1).await?;

    server.stop().await;
    assert_eq!(server.open_connections(), 0, "stop closes every connection");
    Ok(())
}

#[tokio::test]
async fn blocking_queries_are_counted_while_they_wait() -> Result<()> {
    let (server, client) = start().await?;
    server.register(Registration::new("n1", "10.0.0.1", "web"))?;
    let index = server.index();
    // Reads without an index, and with a stale one, never wait.
    client.get("/v1/health/service/web").await?;
    client.get("/v1/health/service/web?index=1").await?;
    assert_eq!(server.open_blocking_queries(), 0);

    let waiting: Vec<_> = (0..3)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.get(&format!("/v1/health/service/web?index={index}&wait=10s")).await })
        })
        .collect();
    eventually("three queries wait", || server.open_blocking_queries() == 3).await?;

    // A client that gives up is counted out as soon as its connection goes.
    let abandoned = {
        let impatient = Client::new(server.http_addr())?;
        let path = format!("/v1/kv/x?index={}&wait=10s", server.index());
        let request = impatient.request(reqwest::Method::GET, &path).timeout(Duration::from_millis(500));
        tokio::spawn(async move { impatient.send(request).await })
    };
    eventually("four queries wait", || server.open_blocking_queries() == 4).await?;
    assert!(abandoned.await?.is_err(), "the client times out");
    eventually("the abandoned query is dropped", || server.open_blocking_queries() == 3).await?;

    server.register(Registration::new("n2", "10.0.0.2", "web"))?;
    for query in waiting {
        assert_eq!(query.await??.status, 200);
    }
    assert_eq!(server.open_blocking_queries(), 0);
    Ok(())
}
