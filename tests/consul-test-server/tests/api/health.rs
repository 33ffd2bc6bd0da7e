//! `/v1/health/service/:service`: wire shape, `?passing`, `?tag`, `?dc`.

use anyhow::Result;
use consul_test_server::{CheckSpec, Registration, Status};
use serde_json::{Value, json};

use crate::support::start;

fn ids(reply: &Value) -> Vec<String> {
    let mut ids: Vec<String> = reply
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|entry| entry["Service"]["ID"].as_str().map(str::to_owned))
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn entries_have_consul_field_names() -> Result<()> {
    let (server, client) = start().await?;
    let index = server.register(
        Registration::new("host-a", "10.0.0.1", "web")
            .id("web-1")
            .port(8080)
            .tag("v1")
            .node_check(CheckSpec::passing("serfHealth").name("Serf Health Status"))
            .check(CheckSpec::passing("web-1-check").output("HTTP 200")),
    )?;
    let reply = client.get("/v1/health/service/web").await?;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.headers["content-type"], "application/json");
    assert_eq!(reply.index(), Some(index));
    let body = reply.json()?;
    let check = |id: &str, name: &str, output: &str, service: (&str, &str, Value)| {
        json!({
            "Node": "host-a", "CheckID": id, "Name": name, "Status": "passing", "Notes": "",
            "Output": output, "ServiceID": service.0, "ServiceName": service.1,
            "ServiceTags": service.2, "Type": "", "Interval": "", "Timeout": "", "ExposedPort": 0,
            "Definition": {}, "CreateIndex": index, "ModifyIndex": index
        })
    };
    let expected = json!([{
        "Node": {
            "ID": "", "Node": "host-a", "Address": "10.0.0.1", "Datacenter": "dc1",
            "TaggedAddresses": null, "Meta": null, "CreateIndex": index, "ModifyIndex": index
        },
        "Service": {
            "ID": "web-1", "Service": "web", "Tags": ["v1"], "Address": "", "Meta": null,
            "Port": 8080, "Weights": {"Passing": 1, "Warning": 1}, "EnableTagOverride": false,
            "Proxy": {"Mode": "", "MeshGateway": {}, "Expose": {}}, "Connect": {},
            "CreateIndex": index, "ModifyIndex": index
        },
        "Checks": [
            check("serfHealth", "Serf Health Status", "", ("", "", json!([]))),
            check("web-1-check", "web-1-check", "HTTP 200", ("web-1", "web", json!(["v1"]))),
        ]
    }]);
    assert_eq!(body, expected);
    Ok(())
}

#[tokio::test]
async fn passing_filter_counts_node_checks_and_treats_warning_as_failing() -> Result<()> {
    let (server, client) = start().await?;
    server.register_many([
        Registration::new("n1", "10.0.0.1", "web").id("all-passing").check(CheckSpec::passing("c1")),
        Registration::new("n2", "10.0.0.2", "web").id("warning").check(CheckSpec::warning("c2")),
        Registration::new("n3", "10.0.0.3", "web")
            .id("node-critical")
            .node_check(CheckSpec::critical("serf-n3"))
            .check(CheckSpec::passing("c3")),
        Registration::new("n4", "10.0.0.4", "web")
            .id("node-passing")
            .node_check(CheckSpec::passing("serf-n4"))
            .check(CheckSpec::passing("c4")),
        Registration::new("n5", "10.0.0.5", "web").id("no-checks"),
    ])?;
    let everything = ["all-passing", "no-checks", "node-critical", "node-passing", "warning"];
    let healthy = ["all-passing", "no-checks", "node-passing"];
    assert_eq!(ids(&client.get("/v1/health/service/web").await?.json()?), everything);
    for query in ["passing", "passing=true", "passing=1"] {
        let reply = client.get(&format!("/v1/health/service/web?{query}")).await?;
        assert_eq!(ids(&reply.json()?), healthy, "{query}");
    }
    assert_eq!(ids(&client.get("/v1/health/service/web?passing=false").await?.json()?), everything);
    let bad = client.get("/v1/health/service/web?passing=maybe").await?;
    assert_eq!((bad.status, bad.text()), (400, "Invalid value for ?passing".to_owned()));

    // A node check turning critical takes every service of that node out.
    server.set_check_status("serf-n4", Status::Critical);
    let reply = client.get("/v1/health/service/web?passing").await?;
    assert_eq!(ids(&reply.json()?), ["all-passing", "no-checks"]);
    Ok(())
}

#[tokio::test]
async fn service_address_defaults_to_empty_string() -> Result<()> {
    let (server, client) = start().await?;
    server.register(Registration::new("n1", "10.0.0.1", "web").id("plain").port(80))?;
    server.register(Registration::new("n2", "10.0.0.2", "web").id("own").port(80).service_address("192.0.2.7"))?;
    let body = client.get("/v1/health/service/web").await?.json()?;
    assert_eq!(body[0]["Service"]["Address"], "");
    assert_eq!(body[0]["Node"]["Address"], "10.0.0.1");
    assert_eq!(body[1]["Service"]["Address"], "192.0.2.7");
    Ok(())
}

#[tokio::test]
async fn tag_filter_is_case_insensitive_and_conjunctive() -> Result<()> {
    let (server, client) = start().await?;
    server.register(Registration::new("n1", "10.0.0.1", "web").id("a").tag("Primary").tag("v1"))?;
    server.register(Registration::new("n2", "10.0.0.2", "web").id("b").tag("v1"))?;
    let tagged = client.get("/v1/health/service/web?tag=primary").await?.json()?;
    assert_eq!(ids(&tagged), ["a"]);
    let both = client.get("/v1/health/service/web?tag=v1&tag=PRIMARY").await?.json()?;
    assert_eq!(ids(&both), ["a"]);
    let v1 = client.get("/v1/health/service/web?tag=v1").await?.json()?;
    assert_eq!(ids(&v1), ["a", "b"]);
    Ok(())
}

#[tokio::test]
async fn unknown_service_is_an_empty_list_with_an_index() -> Result<()> {
    let (_server, client) = start().await?;
    let reply = client.get("/v1/health/service/nope").await?;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()?, json!([]));
    assert_eq!(reply.index(), Some(1));
    Ok(())
}

#[tokio::test]
async fn other_datacenters_are_unreachable() -> Result<()> {
    let (_server, client) = start().await?;
    let reply = client.get("/v1/health/service/web?dc=dc2").await?;
    assert_eq!((reply.status, reply.text()), (500, "No path to datacenter".to_owned()));
    assert_eq!(client.get("/v1/health/service/web?dc=dc1&stale").await?.status, 200);
    Ok(())
}

#[tokio::test]
async fn http_registration_and_agent_check_updates() -> Result<()> {
    let (_server, client) = start().await?;
    let body = json!({
        "Node": "host-a", "Address": "10.0.0.1", "Datacenter": "dc1",
        "NodeMeta": {"rack": "r1"},
        "Service": {"Service": "api", "Port": 9000, "Weights": {"Passing": 5, "Warning": 2},
                    "TaggedAddresses": {"lan": {"address": "10.0.0.1", "port": 9000}}},
        "Checks": [{"CheckID": "api-ttl", "Name": "api TTL", "ServiceID": "api", "Status": "passing"},
                   {"Name": "node-alive"}]
    });
    let registered = client.put_json("/v1/catalog/register", &body).await?;
    assert_eq!((registered.status, registered.text()), (200, "true".to_owned()));

    let entry = client.get("/v1/health/service/api").await?.json()?;
    assert_eq!(entry[0]["Service"]["ID"], "api", "ID defaults to the service name");
    assert_eq!(entry[0]["Service"]["Weights"], json!({"Passing": 5, "Warning": 2}));
    assert_eq!(entry[0]["Service"]["TaggedAddresses"], json!({"lan": {"Address": "10.0.0.1", "Port": 9000}}));
    assert_eq!(entry[0]["Node"]["Meta"], json!({"rack": "r1"}));
    // A check with only a Name gets it as CheckID and starts critical.
    assert_eq!(entry[0]["Checks"][0]["CheckID"], "node-alive");
    assert_eq!(entry[0]["Checks"][0]["Status"], "critical");

    let warned = client.put("/v1/agent/check/warn/api-ttl?note=slow", "").await?;
    assert_eq!(warned.status, 200);
    let checks = &client.get("/v1/health/service/api").await?.json()?[0]["Checks"];
    assert_eq!((checks[1]["Status"].as_str(), checks[1]["Output"].as_str()), (Some("warning"), Some("slow")));

    let update = json!({"Status": "passing", "Output": "fine"});
    assert_eq!(client.put_json("/v1/agent/check/update/api-ttl", &update).await?.status, 200);
    let missing = client.put("/v1/agent/check/pass/nope", "").await?;
    assert_eq!((missing.status, missing.text()), (404, "Unknown check ID \"nope\"".to_owned()));

    let deregister = json!({"Node": "host-a", "ServiceID": "api"});
    assert_eq!(client.put_json("/v1/catalog/deregister", &deregister).await?.text(), "true");
    assert_eq!(client.get("/v1/health/service/api").await?.json()?, json!([]));
    Ok(())
}

#[tokio::test]
async fn reregistering_bumps_modify_index_only_on_change() -> Result<()> {
    let (server, client) = start().await?;
    let registration = Registration::new("host-a", "10.0.0.1", "web").id("web-1").port(80);
    let created = server.register(registration.clone())?;
    server.register(registration.clone())?;
    let same = client.get("/v1/health/service/web").await?.json()?;
    assert_eq!(same[0]["Service"]["ModifyIndex"], created, "identical write is idempotent");

    let changed = server.register(registration.port(81))?;
    let body = client.get("/v1/health/service/web").await?.json()?;
    assert_eq!(body[0]["Service"]["CreateIndex"], created);
    assert_eq!(body[0]["Service"]["ModifyIndex"], changed);
    assert_eq!(body[0]["Service"]["Port"], 81);
    Ok(())
}

#[tokio::test]
async fn invalid_registrations_get_consul_errors() -> Result<()> {
    let (_server, client) = start().await?;
    let cases = [
        (json!({"Address": "10.0.0.1"}), "Must provide node"),
        (json!({"Node": "a"}), "Must provide address if SkipNodeUpdate is not set"),
        (json!({"Node": "a", "Address": "10.0.0.1", "Datacenter": "dc9"}), "No path to datacenter"),
        (
            json!({"Node": "a", "Address": "10.0.0.1", "Check": {"CheckID": "c", "ServiceID": "ghost"}}),
            "Missing service registration",
        ),
    ];
    for (body, message) in cases {
        let reply = client.put_json("/v1/catalog/register", &body).await?;
        assert_eq!((reply.status, reply.text()), (500, message.to_owned()), "{body}");
    }
    let garbage = client.put("/v1/catalog/register", "{").await?;
    assert_eq!(garbage.status, 400);
    assert!(garbage.text().starts_with("Request decode failed"));
    Ok(())
}
