//! `/v1/catalog/*`.

use std::time::{Duration, Instant};

use anyhow::Result;
use consul_test_server::{CheckSpec, Registration};
use serde_json::json;

use crate::support::start;

#[tokio::test]
async fn services_list_deduplicates_tags() -> Result<()> {
    let (server, client) = start().await?;
    server.register(Registration::new("n1", "10.0.0.1", "web").id("w1").tag("v1").tag("primary"))?;
    server.register(Registration::new("n2", "10.0.0.2", "web").id("w2").tag("v1"))?;
    server.register(Registration::new("n2", "10.0.0.2", "db"))?;
    let reply = client.get("/v1/catalog/services").await?;
    assert_eq!(reply.json()?, json!({"db": [], "web": ["primary", "v1"]}));
    assert_eq!(reply.index(), Some(server.index()));
    Ok(())
}

#[tokio::test]
async fn service_entries_have_consul_field_names() -> Result<()> {
    let (server, client) = start().await?;
    let index = server.register(Registration::new("n1", "10.0.0.1", "web").id("w1").port(8080).weights(10, 1))?;
    let reply = client.get("/v1/catalog/service/web").await?;
    let expected = json!([{
        "ID": "", "Node": "n1", "Address": "10.0.0.1", "Datacenter": "dc1",
        "TaggedAddresses": null, "NodeMeta": null, "ServiceKind": "", "ServiceID": "w1",
        "ServiceName": "web", "ServiceTags": [], "ServiceAddress": "",
        "ServiceWeights": {"Passing": 10, "Warning": 1}, "ServiceMeta": {}, "ServicePort": 8080,
        "ServiceSocketPath": "", "ServiceEnableTagOverride": false,
        "ServiceProxy": {"Mode": "", "MeshGateway": {}, "Expose": {}}, "ServiceConnect": {},
        "CreateIndex": index, "ModifyIndex": index
    }]);
    assert_eq!(reply.json()?, expected);
    assert_eq!(reply.index(), Some(index));
    Ok(())
}

#[tokio::test]
async fn deregistering_a_node_removes_its_services() -> Result<()> {
    let (server, client) = start().await?;
    server.register(Registration::new("n1", "10.0.0.1", "web").check(CheckSpec::passing("c")))?;
    server.register(Registration::new("n1", "10.0.0.1", "db"))?;
    server.deregister_node("n1")?;
    assert_eq!(client.get("/v1/catalog/services").await?.json()?, json!({}));
    let web = client.get("/v1/health/service/web").await?;
    assert_eq!(web.json()?, json!([]));
    assert_eq!(web.index(), Some(server.index()), "the removal's index, not 0");
    assert_eq!(server.set_check_status("c", consul_test_server::Status::Critical), 0);
    Ok(())
}

#[tokio::test]
async fn ten_thousand_services_register_and_query_quickly() -> Result<()> {
    let (server, client) = start().await?;
    let started = Instant::now();
    server.register_many((0..10_000).map(|n| {
        let node = format!("host-{}", n % 100);
        let address = format!("10.0.{}.{}", n / 250, n % 250);
        Registration::new(node, address, format!("svc-{n}")).port(8000).check(CheckSpec::passing(format!("c-{n}")))
    }))?;
    let reply = client.get("/v1/health/service/svc-4242?passing").await?;
    assert_eq!(reply.json()?.as_array().map(Vec::len), Some(1));
    let services = client.get("/v1/catalog/services").await?.json()?;
    assert_eq!(services.as_object().map(serde_json::Map::len), Some(10_000));
    assert!(started.elapsed() < Duration::from_secs(20), "{:?}", started.elapsed());
    Ok(())
}
