//! HTTPS with HTTP/2, as Consul's HTTPS API serves it
//! (<https://github.com/hashicorp/consul/pull/3657>: clients that negotiate
//! HTTP/2 by ALPN multiplex their blocking queries over one connection, with
//! Go's default limit of 250 concurrent streams per connection).

use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use consul_test_server::{Acl, ConsulTestServer, Fault, Options, Registration};
use reqwest::{Method, Version};

use crate::support::{Client, start_with};

fn tls() -> Options {
    Options { tls: true, ..Options::default() }
}

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
async fn clients_trusting_the_certificate_get_http2() -> Result<()> {
    let (server, client) = start_with(tls()).await?;
    assert!(server.http_addr().starts_with("https://127.0.0.1:"), "{}", server.http_addr());
    let pem = server.ca_pem().unwrap_or_default();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");

    let reply = client.get("/v1/status/leader").await?;
    assert_eq!((reply.status, reply.version), (200, Version::HTTP_2));
    // The certificate names localhost too.
    let by_name = Client::with_ca(format!("https://localhost:{}", server.addr().port()), &pem)?;
    assert_eq!(by_name.get("/v1/catalog/services").await?.version, Version::HTTP_2);
    // A client that does not trust it is refused.
    let untrusting = reqwest::Client::builder().use_rustls_tls().build()?;
    assert!(untrusting.get(format!("{}/v1/status/leader", server.http_addr())).send().await.is_err());
    // Without TLS there is no certificate.
    assert_eq!(ConsulTestServer::start(Options::default()).await?.ca_pem(), None);
    Ok(())
}

#[tokio::test]
async fn http1_clients_are_served_over_tls_too() -> Result<()> {
    let (server, _) = start_with(tls()).await?;
    let pem = server.ca_pem().unwrap_or_default();
    let http1 = Client::from_builder(server.http_addr(), Client::trusting(&pem)?.http1_only())?;
    let reply = http1.get("/v1/kv/missing").await?;
    assert_eq!((reply.status, reply.version), (404, Version::HTTP_11));
    assert_eq!(reply.index(), Some(1));
    Ok(())
}

#[tokio::test]
async fn faults_acls_and_the_request_log_work_over_http2() -> Result<()> {
    let options = Options { acl: Some(Acl::new().read_write("root").read_only("reader")), ..tls() };
    let (server, client) = start_with(options).await?;
    let denied = client.send(client.request(Method::PUT, "/v1/kv/a").header("X-Consul-Token", "reader")).await?;
    assert_eq!((denied.status, denied.version, denied.text()), (403, Version::HTTP_2, "Permission denied".to_owned()));
    let written =
        client.send(client.request(Method::PUT, "/v1/kv/a").header("X-Consul-Token", "root").body("x")).await?;
    assert_eq!((written.status, written.text()), (200, "true".to_owned()));

    server.faults().set_for("/v1/kv/", Fault::Status500);
    let failed = client.get("/v1/kv/a?token=root").await?;
    assert_eq!((failed.status, failed.version, failed.text()), (500, Version::HTTP_2, "No cluster leader".to_owned()));
    server.faults().clear();

    let log = server.request_log();
    let paths: Vec<_> = log.iter().map(|r| (r.method.as_str(), r.path.as_str(), r.token.as_deref())).collect();
    assert_eq!(
        paths,
        [("PUT", "/v1/kv/a", Some("reader")), ("PUT", "/v1/kv/a", Some("root")), ("GET", "/v1/kv/a", Some("root"))]
    );
    assert_eq!(log[2].query, "token=root");
    Ok(())
}

#[tokio::test]
async fn stop_and_start_again_keep_certificate_and_port() -> Result<()> {
    let (server, client) = start_with(tls()).await?;
    let (addr, pem) = (server.addr(), server.ca_pem());
    server.kv_put("k", "v");
    assert_eq!(client.get("/v1/kv/k?raw").await?.text(), "v");

    // A blocking query in flight over HTTP/2 is cut off by the stop, and no
    // longer counts as waiting.
    let index = server.index();
    let waiting = {
        let client = client.clone();
        tokio::spawn(async move { client.get(&format!("/v1/kv/k?index={index}&wait=5s")).await })
    };
    eventually("the query waits", || server.open_blocking_queries() == 1).await?;
    server.stop().await;
    assert!(waiting.await?.is_err(), "in-flight request must fail");
    eventually("the stream is dropped", || server.open_blocking_queries() == 0).await?;
    assert!(client.get("/v1/kv/k").await.is_err(), "nothing listens");

    server.start_again().await?;
    assert_eq!((server.addr(), server.ca_pem()), (addr, pem));
    let reply = client.get("/v1/kv/k?raw").await?;
    assert_eq!((reply.text(), reply.version), ("v".to_owned(), Version::HTTP_2));
    Ok(())
}

/// 300 blocking queries over one HTTP/2 connection. What happens, as
/// observed: the server advertises `SETTINGS_MAX_CONCURRENT_STREAMS` 250,
/// so the client (hyper's h2) opens 250 streams, which wait inside the
/// server, and queues the other 50 itself without opening a second
/// connection. After a write, the 250 are answered; the client then sends
/// the 50 it held, whose `?index=` is already out of date, so the server
/// answers them at once. Nothing stalls; all 300 see the new index.
#[tokio::test]
async fn three_hundred_blocking_queries_over_one_connection() -> Result<()> {
    let (server, client) = start_with(tls()).await?;
    server.register(Registration::new("n1", "10.0.0.1", "web"))?;
    // One request first, so the connection (and its HTTP/2 settings) exists
    // before the burst, which then shares it.
    let index = client.get("/v1/health/service/web").await?.index().unwrap_or_default();
    assert_eq!(server.open_connections(), 1);

    let queries: Vec<_> = (0..300)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.get(&format!("/v1/health/service/web?index={index}&wait=30s")).await })
        })
        .collect();
    eventually("250 queries wait", || server.open_blocking_queries() == 250).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(server.open_blocking_queries(), 250, "the server holds at most 250 streams of one connection");
    assert_eq!(server.open_connections(), 1, "the client queues the rest instead of connecting again");

    let write_index = server.register(Registration::new("n2", "10.0.0.2", "web"))?;
    for query in queries {
        let reply = query.await??;
        assert_eq!((reply.status, reply.version, reply.index()), (200, Version::HTTP_2, Some(write_index)));
    }
    assert_eq!(server.open_blocking_queries(), 0);
    assert_eq!(server.open_connections(), 1);
    Ok(())
}
