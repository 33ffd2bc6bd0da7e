//! Fault switches, flipped while the server runs.

use std::time::{Duration, Instant};

use anyhow::Result;
use consul_test_server::{Fault, Registration};

use crate::support::{Client, start};

#[tokio::test]
async fn status_500_and_429_until_cleared() -> Result<()> {
    let (server, client) = start().await?;
    server.faults().set(Fault::Status500);
    let failed = client.get("/v1/health/service/web").await?;
    assert_eq!((failed.status, failed.text()), (500, "No cluster leader".to_owned()));
    assert_eq!(failed.index(), None);

    server.faults().set(Fault::Status500Body("rpc error".into()));
    assert_eq!(client.get("/v1/catalog/services").await?.text(), "rpc error");

    server.faults().set(Fault::TooManyRequestsRetryAfter(Duration::from_secs(3)));
    let limited = client.get("/v1/health/service/web").await?;
    assert_eq!((limited.status, limited.text()), (429, "Too Many Requests".to_owned()));
    assert_eq!(limited.headers["retry-after"], "3");

    server.faults().set(Fault::TooManyRequests);
    let limited = client.get("/v1/health/service/web").await?;
    assert_eq!(limited.status, 429);
    assert!(!limited.headers.contains_key("retry-after"));

    server.faults().clear();
    assert_eq!(client.get("/v1/health/service/web").await?.status, 200);
    Ok(())
}

#[tokio::test]
async fn faults_can_target_a_path_prefix() -> Result<()> {
    let (server, client) = start().await?;
    server.faults().set_for("/v1/kv/", Fault::Status500);
    assert_eq!(client.get("/v1/kv/a").await?.status, 500);
    assert_eq!(client.get("/v1/health/service/web").await?.status, 200);
    server.faults().clear_for("/v1/kv/");
    assert_eq!(client.get("/v1/kv/a").await?.status, 404);
    Ok(())
}

#[tokio::test]
async fn hang_holds_requests_until_cleared() -> Result<()> {
    let (server, client) = start().await?;
    server.register(Registration::new("n1", "10.0.0.1", "web"))?;
    server.faults().set(Fault::Hang);

    // A client with a short timeout gives up.
    let impatient = Client::new(server.http_addr())?;
    let request = impatient.request(reqwest::Method::GET, "/v1/health/service/web").timeout(Duration::from_millis(300));
    let error = impatient.send(request).await.expect_err("a hung request must not be answered");
    assert!(error.downcast_ref::<reqwest::Error>().is_some_and(reqwest::Error::is_timeout), "{error}");

    // A patient one is answered once the switch is cleared.
    let waiting = tokio::spawn(async move { client.get("/v1/health/service/web").await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiting.is_finished());
    server.faults().clear();
    let reply = waiting.await??;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()?.as_array().map(Vec::len), Some(1));
    Ok(())
}

#[tokio::test]
async fn delay_slows_every_response() -> Result<()> {
    let (server, client) = start().await?;
    server.faults().set(Fault::Delay(Duration::from_millis(300)));
    let started = Instant::now();
    let reply = client.get("/v1/catalog/services").await?;
    let elapsed = started.elapsed();
    assert_eq!(reply.status, 200);
    assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    Ok(())
}
