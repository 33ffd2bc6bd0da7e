//! `PUT /v1/txn` (<https://developer.hashicorp.com/consul/api-docs/txn>),
//! KV operations, checked against Consul's `agent/txn_endpoint.go` and
//! `agent/consul/state/txn.go`.

use anyhow::Result;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use consul_test_server::{Acl, Options};
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{Client, Reply, start, start_with};

fn b64(text: &str) -> String {
    STANDARD.encode(text)
}

fn kv(verb: &str, key: &str) -> Value {
    json!({"KV": {"Verb": verb, "Key": key}})
}

fn kv_set(verb: &str, key: &str, value: &str, index: u64) -> Value {
    json!({"KV": {"Verb": verb, "Key": key, "Value": b64(value), "Index": index}})
}

async fn txn(client: &Client, ops: &[Value]) -> Result<Reply> {
    client.put_json("/v1/txn", &Value::from(ops.to_vec())).await
}

#[tokio::test]
async fn two_allocations_in_one_transaction_share_one_index() -> Result<()> {
    let (server, client) = start().await?;
    server.kv_put("unrelated", "x");
    let kv_index = client.get("/v1/kv/viking/vip/?recurse").await?.index().unwrap_or_default();
    let waiting = {
        let client = client.clone();
        tokio::spawn(async move { client.get(&format!("/v1/kv/viking/vip/?recurse&index={kv_index}&wait=5s")).await })
    };

    // cas with index 0: create only if absent, as an allocator does.
    let ops = [kv_set("cas", "viking/vip/web", "10.96.0.1", 0), kv_set("cas", "viking/vip/db", "10.96.0.2", 0)];
    let reply = txn(&client, &ops).await?;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.headers["content-type"], "application/json");
    assert_eq!(reply.index(), None, "a write transaction has no X-Consul-Index");
    let index = server.index();
    let entry = |key: &str| {
        json!({"KV": {"LockIndex": 0, "Key": key, "Flags": 0, "Value": null,
                      "CreateIndex": index, "ModifyIndex": index}})
    };
    // Write results leave the value out.
    assert_eq!(reply.json()?, json!({"Results": [entry("viking/vip/web"), entry("viking/vip/db")], "Errors": null}));
    for key in ["viking/vip/web", "viking/vip/db"] {
        assert_eq!(server.kv_get(key).map(|e| (e.create_index, e.modify_index)), Some((index, index)), "{key}");
    }
    // The prefix's blocking query wakes with the transaction's index.
    let woken = waiting.await??;
    assert_eq!(woken.index(), Some(index));
    assert_eq!(woken.json()?.as_array().map(Vec::len), Some(2));
    Ok(())
}

#[tokio::test]
async fn a_failing_cas_in_the_middle_writes_nothing() -> Result<()> {
    let (server, client) = start().await?;
    let existing = server.kv_put("viking/vip/db", "10.96.0.2");
    let before = server.index();
    let ops = [
        kv_set("set", "viking/vip/web", "10.96.0.1", 0),
        kv_set("cas", "viking/vip/db", "10.96.0.9", existing + 100),
        kv_set("set", "viking/vip/api", "10.96.0.3", 0),
        kv("check-not-exists", "viking/vip/db"),
    ];
    let reply = txn(&client, &ops).await?;
    assert_eq!(reply.status, 409);
    assert_eq!(reply.headers["content-type"], "application/json");
    let expected = json!({"Results": null, "Errors": [
        {"OpIndex": 1, "What": "failed to set key \"viking/vip/db\", index is stale"},
        {"OpIndex": 3, "What": "key \"viking/vip/db\" exists"},
    ]});
    assert_eq!(reply.json()?, expected);
    assert!(server.kv_get("viking/vip/web").is_none());
    assert!(server.kv_get("viking/vip/api").is_none());
    assert_eq!(
        server.kv_get("viking/vip/db").map(|e| (e.value, e.modify_index)),
        Some((b"10.96.0.2".to_vec(), existing))
    );
    let recurse = client.get("/v1/kv/viking/vip/?recurse").await?;
    assert_eq!(recurse.index(), Some(existing), "the KV index did not move");
    // The Raft entry was committed before the state store rejected it.
    assert_eq!(server.index(), before + 1);
    Ok(())
}

#[tokio::test]
async fn more_than_128_operations_are_refused() -> Result<()> {
    let (server, client) = start().await?;
    // Consul's maxTxnOps is 128 since 1.14 (hashicorp/consul#14599); it was 64 before.
    let ops: Vec<Value> = (0..129).map(|n| kv_set("set", &format!("k/{n}"), "v", 0)).collect();
    let refused = txn(&client, &ops).await?;
    assert_eq!(refused.status, 413);
    assert_eq!(refused.text(), "Transaction contains too many operations (129 > 128)");
    assert!(server.kv_get("k/0").is_none());
    assert_eq!(txn(&client, &ops[..128]).await?.status, 200);
    assert!(server.kv_get("k/127").is_some());
    Ok(())
}

#[tokio::test]
async fn results_come_in_operation_order_with_each_verbs_fields() -> Result<()> {
    let (server, client) = start().await?;
    let a = server.kv_put("t/a", "1");
    let b = server.kv_put("t/b", "2");
    let ops = [
        kv("get", "t/b"),
        json!({"KV": {"Verb": "check-index", "Key": "t/a", "Index": a}}),
        kv("get-tree", "t/"),
        json!({"KV": {"Verb": "set", "Key": "t/c", "Value": b64("3"), "Flags": 7}}),
        kv("delete", "t/a"),
        kv("check-not-exists", "t/a"),
        kv("get-tree", "t/"),
    ];
    let reply = txn(&client, &ops).await?;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let index = server.index();
    let entry = |key: &str, value: Option<&str>, flags: u64, create: u64, modify: u64| {
        json!({"KV": {"LockIndex": 0, "Key": key, "Flags": flags, "Value": value.map(b64),
                      "CreateIndex": create, "ModifyIndex": modify}})
    };
    let expected = json!({"Results": [
        entry("t/b", Some("2"), 0, b, b),
        // check-index answers with the entry, value left out.
        entry("t/a", None, 0, a, a),
        entry("t/a", Some("1"), 0, a, a),
        entry("t/b", Some("2"), 0, b, b),
        entry("t/c", None, 7, index, index),
        // delete and check-not-exists add no result; the last get-tree sees both writes.
        entry("t/b", Some("2"), 0, b, b),
        entry("t/c", Some("3"), 7, index, index),
    ], "Errors": null});
    assert_eq!(reply.json()?, expected);
    Ok(())
}

#[tokio::test]
async fn read_only_transactions_are_served_as_reads() -> Result<()> {
    let (server, client) = start().await?;
    server.kv_put("r/a", "1");
    let before = server.index();
    let reply = txn(&client, &[kv("get", "r/a"), kv("check-not-exists", "r/b")]).await?;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.headers["x-consul-knownleader"], "true");
    assert_eq!(reply.headers["x-consul-lastcontact"], "0");
    assert!(!reply.headers.contains_key("x-consul-index"), "Txn.Read sets only the leader headers");
    // structs.TxnReadResponse embeds QueryMeta, so its fields are in the body.
    let expected = json!({
        "Results": [{"KV": {"LockIndex": 0, "Key": "r/a", "Flags": 0, "Value": b64("1"),
                            "CreateIndex": before, "ModifyIndex": before}}],
        "Errors": null, "Index": 0, "LastContact": 0, "KnownLeader": true, "ConsistencyLevel": "",
        "NotModified": false, "Backend": 0, "ResultsFilteredByACLs": false
    });
    assert_eq!(reply.json()?, expected);
    assert_eq!(server.index(), before, "no Raft entry");

    let missing = txn(&client, &[kv("get", "r/nope")]).await?;
    assert_eq!(missing.status, 409);
    assert_eq!(missing.json()?["Errors"], json!([{"OpIndex": 0, "What": "key \"r/nope\" doesn't exist"}]));
    assert_eq!(missing.headers["x-consul-knownleader"], "true");
    let both = client.put_json("/v1/txn?stale&consistent", &json!([kv("get", "r/a")])).await?;
    assert_eq!(both.status, 400);
    Ok(())
}

#[tokio::test]
async fn failed_operations_carry_consul_messages() -> Result<()> {
    let (server, client) = start().await?;
    let index = server.kv_put("m/a", "1");
    let ops = [
        json!({"KV": {"Verb": "check-index", "Key": "m/a", "Index": index + 1}}),
        kv("check-index", "m/none"),
        json!({"KV": {"Verb": "delete-cas", "Key": "m/a", "Index": index + 1}}),
        json!({"KV": {"Verb": "lock", "Key": "m/a", "Value": b64("x"),
                      "Session": "5f0d1c4e-0000-4000-8000-000000000000"}}),
        kv("lock", "m/a"),
        json!({"KV": {"Verb": "unlock", "Key": "m/a", "Session": "s1"}}),
        json!({"KV": {"Verb": "check-session", "Key": "m/a", "Session": "s1"}}),
        kv("frobnicate", "m/a"),
        kv("set", ""),
    ];
    let reply = txn(&client, &ops).await?;
    assert_eq!(reply.status, 409);
    // "Must provide key" is found before anything runs, and alone stops the transaction.
    assert_eq!(reply.json()?, json!({"Results": null, "Errors": [{"OpIndex": 8, "What": "Must provide key"}]}));

    let reply = txn(&client, &ops[..8]).await?;
    let whats: Vec<Value> = reply.json()?["Errors"].as_array().cloned().unwrap_or_default();
    let expected = [
        (0, format!("failed index check for key \"m/a\", current modify index {index} != {}", index + 1)),
        (1, "failed to check index, key \"m/none\" doesn't exist".to_owned()),
        (2, "failed to delete key \"m/a\", index is stale".to_owned()),
        // No session exists here, so a lock fails as one with an unknown session does.
        (3, "invalid session \"5f0d1c4e-0000-4000-8000-000000000000\"".to_owned()),
        (4, "missing session".to_owned()),
        (5, "failed to unlock key \"m/a\", lock isn't held, or is held by another session".to_owned()),
        (6, "failed session check for key \"m/a\", current session \"\" != \"s1\"".to_owned()),
        (7, "unknown KV verb \"frobnicate\"".to_owned()),
    ]
    .map(|(op, what)| json!({"OpIndex": op, "What": what}));
    assert_eq!(whats, expected);
    assert_eq!(server.kv_get("m/a").map(|e| e.modify_index), Some(index));

    // delete-cas of a missing key, and check-session without a session, succeed.
    let fine =
        txn(&client, &[json!({"KV": {"Verb": "delete-cas", "Key": "m/none", "Index": 3}}), kv("check-session", "m/a")])
            .await?;
    assert_eq!(fine.status, 200, "{}", fine.text());
    Ok(())
}

#[tokio::test]
async fn acls_apply_per_operation() -> Result<()> {
    let options = Options { acl: Some(Acl::new().read_write("root").read_only("reader")), ..Options::default() };
    let (server, client) = start_with(options).await?;
    server.kv_put("acl/a", "1");
    let as_token =
        |token: &str, ops: Value| client.request(Method::PUT, "/v1/txn").header("X-Consul-Token", token).json(&ops);

    let denied = client.send(as_token("reader", json!([kv("get", "acl/a"), kv_set("set", "acl/b", "2", 0)]))).await?;
    assert_eq!(denied.status, 409);
    assert_eq!(denied.json()?, json!({"Results": null, "Errors": [{"OpIndex": 1, "What": "Permission denied"}]}));
    assert!(server.kv_get("acl/b").is_none());
    let read = client.send(as_token("reader", json!([kv("get", "acl/a")]))).await?;
    assert_eq!((read.status, read.json()?["Results"][0]["KV"]["Key"].clone()), (200, json!("acl/a")));
    let written = client.send(as_token("root", json!([kv_set("set", "acl/b", "2", 0)]))).await?;
    assert_eq!(written.status, 200);

    let unknown = client.send(as_token("guess", json!([kv("get", "acl/a")]))).await?;
    assert_eq!((unknown.status, unknown.text()), (403, "ACL not found".to_owned()));
    // The anonymous token may read nothing: its get results are dropped,
    // its checks and writes denied.
    let anonymous = txn(&client, &[kv("get", "acl/a")]).await?;
    assert_eq!((anonymous.status, anonymous.json()?["Results"].clone()), (200, json!([])));
    let anonymous = txn(&client, &[kv("check-index", "acl/a"), kv("delete", "acl/a")]).await?;
    let errors = json!([{"OpIndex": 0, "What": "Permission denied"}, {"OpIndex": 1, "What": "Permission denied"}]);
    assert_eq!((anonymous.status, anonymous.json()?["Errors"].clone()), (409, errors));
    Ok(())
}

#[tokio::test]
async fn malformed_and_unsupported_transactions_are_refused() -> Result<()> {
    let (server, client) = start().await?;
    let garbage = client.put("/v1/txn", "{").await?;
    assert_eq!(garbage.status, 400);
    assert!(garbage.text().starts_with("Failed to parse body: "), "{}", garbage.text());
    let bad_value = txn(&client, &[json!({"KV": {"Verb": "set", "Key": "k", "Value": "!!!!"}})]).await?;
    assert_eq!(
        (bad_value.status, bad_value.text()),
        (400, "Failed to parse body: illegal base64 data at input byte 0".to_owned())
    );

    // Consul supports catalog operations; this server does not, and says so.
    let node = json!({"Node": {"Verb": "set", "Node": {"Node": "n1", "Address": "10.0.0.1"}}});
    let refused = txn(&client, &[kv_set("set", "k", "v", 0), node]).await?;
    assert_eq!(refused.status, 400);
    assert_eq!(refused.text(), "consul-test-server does not implement Node operations in /v1/txn, only KV");
    assert!(server.kv_get("k").is_none());

    // Consul's convertOps drops an element naming no operation, so OpIndex counts without it.
    let skipped = txn(&client, &[json!({}), kv("get", "missing")]).await?;
    assert_eq!(skipped.json()?["Errors"], json!([{"OpIndex": 0, "What": "key \"missing\" doesn't exist"}]));

    let big = "x".repeat(400 * 1024);
    let too_big = txn(&client, &[kv_set("set", "k", &big, 0)]).await?;
    assert_eq!((too_big.status, too_big.text()), (413, "Request body too large, max size: 524288 bytes".to_owned()));
    assert_eq!(client.get("/v1/txn").await?.status, 405);
    Ok(())
}
