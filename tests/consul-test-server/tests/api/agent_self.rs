//! `GET /v1/agent/self` (<https://developer.hashicorp.com/consul/api-docs/agent#read-configuration>),
//! and dev mode, in which the server registers itself as `consul agent -dev` does.

use anyhow::Result;
use consul_test_server::{Acl, Options};
use reqwest::Method;
use serde_json::json;

use crate::support::{start, start_with};

#[tokio::test]
async fn describes_the_local_server_agent() -> Result<()> {
    let (server, client) = start().await?;
    assert_eq!(server.node_name(), "consul-test-server");
    let reply = client.get("/v1/agent/self").await?;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.index(), None, "not a blocking endpoint");
    let body = reply.json()?;

    let config = &body["Config"];
    let node_id = config["NodeID"].as_str().unwrap_or_default().to_owned();
    let groups: Vec<usize> = node_id.split('-').map(str::len).collect();
    assert_eq!(groups, [8, 4, 4, 4, 12], "NodeID is a UUID: {node_id}");
    assert_eq!(config["Datacenter"], "dc1");
    assert_eq!(config["PrimaryDatacenter"], "dc1");
    assert_eq!(config["NodeName"], "consul-test-server");
    assert_eq!(config["Server"], true);
    assert!(config["Version"].as_str().is_some_and(|v| v.starts_with("1.")), "{config}");
    assert!(config["Revision"].as_str().is_some_and(|r| !r.is_empty()));

    let debug = &body["DebugConfig"];
    assert_eq!((debug["DevMode"].clone(), debug["ServerMode"].clone()), (json!(false), json!(true)));
    assert_eq!((debug["NodeName"].clone(), debug["NodeID"].clone()), (json!("consul-test-server"), json!(node_id)));
    assert_eq!(debug["ACLsEnabled"], false);

    // Coord, Member and Meta sit beside Config, as in the documented sample.
    assert_eq!(
        body["Coord"],
        json!({"Vec": [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], "Error": 1.5, "Adjustment": 0.0, "Height": 1.0e-5})
    );
    let member = &body["Member"];
    assert_eq!((member["Name"].clone(), member["Addr"].clone()), (json!("consul-test-server"), json!("127.0.0.1")));
    assert_eq!((member["Port"].clone(), member["Status"].clone()), (json!(8301), json!(1)));
    for (tag, value) in [("role", "consul"), ("dc", "dc1"), ("port", "8300"), ("id", node_id.as_str())] {
        assert_eq!(member["Tags"][tag], value, "{tag}");
    }
    assert_eq!(body["Meta"]["consul-network-segment"], "");
    assert_eq!(body["Meta"]["consul-version"], config["Version"]);
    assert!(body.get("xDS").is_none(), "no xDS server, so Consul omits it");
    Ok(())
}

#[tokio::test]
async fn dev_mode_registers_the_server_node_and_consul_service() -> Result<()> {
    let options = Options { dev_mode: true, node_name: "dev-box".into(), ..Options::default() };
    let (server, client) = start_with(options).await?;
    let body = client.get("/v1/agent/self").await?.json()?;
    assert_eq!(body["DebugConfig"]["DevMode"], true);
    assert_eq!(body["Member"]["Tags"]["bootstrap"], "1");
    let node_id = body["Config"]["NodeID"].clone();

    let nodes = client.get("/v1/catalog/nodes").await?.json()?;
    let index = server.index();
    let tagged = json!({"lan": "127.0.0.1", "lan_ipv4": "127.0.0.1", "wan": "127.0.0.1", "wan_ipv4": "127.0.0.1"});
    assert_eq!(
        nodes,
        json!([{
            "ID": node_id, "Node": "dev-box", "Address": "127.0.0.1", "Datacenter": "dc1",
            "TaggedAddresses": tagged, "Meta": body["Meta"], "CreateIndex": index, "ModifyIndex": index
        }])
    );
    assert_eq!(client.get("/v1/catalog/services").await?.json()?, json!({"consul": []}));

    let consul = client.get("/v1/health/service/consul?passing").await?.json()?;
    let service = &consul[0]["Service"];
    assert_eq!((service["ID"].clone(), service["Port"].clone()), (json!("consul"), json!(8300)));
    assert_eq!(service["Meta"]["version"], body["Config"]["Version"]);
    assert_eq!(service["Meta"]["raft_version"], "3");
    let check = &consul[0]["Checks"][0];
    assert_eq!(
        (check["CheckID"].clone(), check["Name"].clone(), check["Status"].clone(), check["Output"].clone()),
        (json!("serfHealth"), json!("Serf Health Status"), json!("passing"), json!("Agent alive and reachable"))
    );
    Ok(())
}

#[tokio::test]
async fn needs_read_access() -> Result<()> {
    let options = Options { acl: Some(Acl::new().read_only("reader")), ..Options::default() };
    let (_server, client) = start_with(options).await?;
    let anonymous = client.get("/v1/agent/self").await?;
    assert_eq!((anonymous.status, anonymous.text()), (403, "Permission denied".to_owned()));
    let reader = client.send(client.request(Method::GET, "/v1/agent/self").header("X-Consul-Token", "reader")).await?;
    assert_eq!(reader.status, 200);
    assert_eq!(reader.json()?["DebugConfig"]["ACLsEnabled"], true);
    assert_eq!(reader.json()?["Member"]["Tags"]["acls"], "1");
    Ok(())
}
