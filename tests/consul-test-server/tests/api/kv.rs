//! `/v1/kv/:key`: reads, writes, check-and-set, deletes, listings.

use anyhow::Result;
use serde_json::json;

use crate::support::start;

#[tokio::test]
async fn missing_key_is_404_with_an_index() -> Result<()> {
    let (server, client) = start().await?;
    let reply = client.get("/v1/kv/viking/vip/web").await?;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.index(), Some(1), "never 0, even on an empty store");
    server.kv_put("other", "x");
    let reply = client.get("/v1/kv/viking/vip/web").await?;
    assert_eq!((reply.status, reply.index()), (404, Some(server.index())));
    Ok(())
}

#[tokio::test]
async fn put_then_get_in_consul_format() -> Result<()> {
    let (server, client) = start().await?;
    let put = client.put("/v1/kv/viking/vip/web?flags=42", "10.96.0.10:80").await?;
    assert_eq!((put.status, put.text()), (200, "true".to_owned()));
    let index = server.index();
    let reply = client.get("/v1/kv/viking/vip/web").await?;
    assert_eq!(reply.index(), Some(index));
    let expected = json!([{
        "LockIndex": 0, "Key": "viking/vip/web", "Flags": 42, "Value": "MTAuOTYuMC4xMDo4MA==",
        "CreateIndex": index, "ModifyIndex": index
    }]);
    assert_eq!(reply.json()?, expected);
    let raw = client.get("/v1/kv/viking/vip/web?raw").await?;
    assert_eq!(raw.text(), "10.96.0.10:80");
    assert_eq!(server.kv_get("viking/vip/web").map(|e| e.value), Some(b"10.96.0.10:80".to_vec()));

    client.put("/v1/kv/empty", "").await?;
    assert_eq!(client.get("/v1/kv/empty").await?.json()?[0]["Value"], json!(null));
    Ok(())
}

#[tokio::test]
async fn cas_zero_creates_only_if_absent() -> Result<()> {
    let (_server, client) = start().await?;
    assert_eq!(client.put("/v1/kv/lock?cas=0", "first").await?.text(), "true");
    assert_eq!(client.put("/v1/kv/lock?cas=0", "second").await?.text(), "false");
    assert_eq!(client.get("/v1/kv/lock?raw").await?.text(), "first");
    Ok(())
}

#[tokio::test]
async fn cas_index_updates_only_if_unchanged() -> Result<()> {
    let (server, client) = start().await?;
    let modify = server.kv_put("config", "v1");
    assert_eq!(client.put(&format!("/v1/kv/config?cas={}", modify + 100), "lost").await?.text(), "false");
    assert_eq!(client.put(&format!("/v1/kv/config?cas={modify}"), "v2").await?.text(), "true");
    assert_eq!(client.put(&format!("/v1/kv/config?cas={modify}"), "v3").await?.text(), "false");
    assert_eq!(client.get("/v1/kv/config?raw").await?.text(), "v2");
    assert_eq!(client.put("/v1/kv/absent?cas=7", "x").await?.text(), "false");
    let bad = client.put("/v1/kv/config?cas=abc", "x").await?;
    assert_eq!(bad.status, 400);
    Ok(())
}

#[tokio::test]
async fn deletes_follow_consul_rules() -> Result<()> {
    let (server, client) = start().await?;
    let modify = server.kv_put("a/1", "x");
    server.kv_put("a/2", "x");
    server.kv_put("b", "x");
    assert_eq!(client.delete(&format!("/v1/kv/a/1?cas={}", modify + 1)).await?.text(), "false");
    assert_eq!(client.delete("/v1/kv/a/1?cas=0").await?.text(), "false");
    assert_eq!(client.delete(&format!("/v1/kv/a/1?cas={modify}")).await?.text(), "true");
    assert_eq!(client.delete("/v1/kv/a/1?cas=5").await?.text(), "true", "missing key: nothing to do");
    assert_eq!(client.delete("/v1/kv/a/?recurse").await?.text(), "true");
    assert_eq!(client.get("/v1/kv/a/?recurse").await?.status, 404);
    assert_eq!(client.delete("/v1/kv/b").await?.text(), "true");
    assert!(server.kv_get("b").is_none());
    Ok(())
}

#[tokio::test]
async fn recurse_and_keys_listings() -> Result<()> {
    let (server, client) = start().await?;
    for key in ["web/a", "web/sub/b", "web/sub/c", "webby"] {
        server.kv_put(key, "x");
    }
    let recurse = client.get("/v1/kv/web/?recurse").await?;
    let keys: Vec<_> = recurse.json()?.as_array().into_iter().flatten().map(|e| e["Key"].clone()).collect();
    assert_eq!(keys, [json!("web/a"), json!("web/sub/b"), json!("web/sub/c")]);
    assert_eq!(recurse.index(), server.kv_get("web/sub/c").map(|e| e.modify_index));

    let listed = client.get("/v1/kv/web/?keys&separator=/").await?.json()?;
    assert_eq!(listed, json!(["web/a", "web/sub/"]));
    let all = client.get("/v1/kv/web?keys").await?.json()?;
    assert_eq!(all, json!(["web/a", "web/sub/b", "web/sub/c", "webby"]));
    assert_eq!(client.get("/v1/kv/nothing/?keys").await?.status, 404);

    // Deleting the newest key under a prefix still moves the prefix's index forward.
    let before = client.get("/v1/kv/web/?recurse").await?.index();
    client.delete("/v1/kv/web/sub/c").await?;
    assert!(client.get("/v1/kv/web/?recurse").await?.index() > before);
    Ok(())
}

#[tokio::test]
async fn rewriting_the_same_value_keeps_the_modify_index() -> Result<()> {
    // Consul's kvsSetTxn skips a write that changes neither value nor flags.
    let (server, client) = start().await?;
    let first = server.kv_put("same", "v");
    assert_eq!(client.put("/v1/kv/same", "v").await?.text(), "true");
    assert_eq!(server.kv_get("same").map(|e| e.modify_index), Some(first));
    assert_eq!(client.get("/v1/kv/same").await?.index(), Some(first));
    client.put("/v1/kv/same?flags=1", "v").await?;
    assert!(server.kv_get("same").is_some_and(|e| e.modify_index > first), "new flags are a change");
    Ok(())
}
