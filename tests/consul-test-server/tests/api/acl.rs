//! ACL tokens: where they are read from and what they allow.

use anyhow::Result;
use consul_test_server::{Acl, Options};
use reqwest::Method;

use crate::support::start_with;

fn with_acl() -> Options {
    Options { acl: Some(Acl::new().read_write("root-secret").read_only("reader")), ..Options::default() }
}

#[tokio::test]
async fn requests_need_a_known_token() -> Result<()> {
    let (server, client) = start_with(with_acl()).await?;
    let anonymous = client.get("/v1/health/service/web").await?;
    assert_eq!((anonymous.status, anonymous.text()), (403, "Permission denied".to_owned()));
    assert_eq!(anonymous.index(), None);
    let unknown = client.send(client.request(Method::GET, "/v1/kv/a").header("X-Consul-Token", "guess")).await?;
    assert_eq!((unknown.status, unknown.text()), (403, "ACL not found".to_owned()));

    let header = client.request(Method::GET, "/v1/health/service/web").header("X-Consul-Token", "root-secret");
    assert_eq!(client.send(header).await?.status, 200);
    let bearer = client.request(Method::GET, "/v1/catalog/services").bearer_auth("root-secret");
    assert_eq!(client.send(bearer).await?.status, 200);
    assert_eq!(client.get("/v1/health/service/web?token=reader").await?.status, 200);

    let tokens: Vec<_> = server.request_log().into_iter().map(|r| r.token).collect();
    let expected = [None, Some("guess"), Some("root-secret"), Some("root-secret"), Some("reader")];
    assert_eq!(tokens, expected.map(|t| t.map(str::to_owned)));
    Ok(())
}

#[tokio::test]
async fn read_only_tokens_cannot_write() -> Result<()> {
    let (server, client) = start_with(with_acl()).await?;
    let denied =
        client.send(client.request(Method::PUT, "/v1/kv/a").header("X-Consul-Token", "reader").body("x")).await?;
    assert_eq!((denied.status, denied.text()), (403, "Permission denied".to_owned()));
    let anonymous = client.put("/v1/kv/a", "x").await?;
    assert_eq!((anonymous.status, anonymous.text()), (403, "Permission denied".to_owned()));
    assert!(server.kv_get("a").is_none());
    let allowed =
        client.send(client.request(Method::PUT, "/v1/kv/a").header("X-Consul-Token", "root-secret").body("x")).await?;
    assert_eq!(allowed.text(), "true");
    // Status endpoints need no token.
    assert_eq!(client.get("/v1/status/leader").await?.status, 200);
    Ok(())
}
