//! Containers from a real dockerd: declared dependencies enforced in the kernel at connect
//! time from a container's first instruction, the operator's say over labels that lower a
//! mode, per-container port overlays, resync after a dockerd restart, bad declarations.

use std::time::Duration;

use viking_tests::{
    Agent, Cgroup, PinGuard,
    config::{ServiceSpec, render},
    docker::TestDocker,
    pins, require_root, wait_for,
};

/// A host with a dockerd whose containers live under the test cgroup.
struct Host {
    docker: TestDocker,
    pins: PinGuard,
    cgroup: Cgroup,
}

fn host() -> Host {
    require_root();
    let cgroup = Cgroup::unique().unwrap();
    let docker = TestDocker::start(&cgroup);
    Host { docker, pins: pins(), cgroup }
}

/// Backends `web` (10.N.0.10) and `api` (10.N.0.20) on network `net`, and the agent
/// config serving them at 240.0.0.10:80 and 240.0.0.20:80.
fn services(h: &Host, subnet: u8, policy: &str) -> String {
    h.docker.network("net", &format!("10.{subnet}.0.0/24"));
    h.docker.http_backend("web-0", "net", &format!("10.{subnet}.0.10"), "web-backend");
    h.docker.http_backend("api-0", "net", &format!("10.{subnet}.0.20"), "api-backend");
    let web = ServiceSpec::tcp("web", "240.0.0.10", 80, &[format!("10.{subnet}.0.10:80").parse().unwrap()]);
    let api = ServiceSpec::tcp("api", "240.0.0.20", 80, &[format!("10.{subnet}.0.20:80").parse().unwrap()]);
    format!(
        "{}[docker]\nhost = {:?}\npolicy = {policy:?}\ncgroup_parent = {:?}\n",
        render(&[web, api]),
        h.docker.host(),
        h.docker.cgroup_parent()
    )
}

/// Waits until the kernel's policy (as `maps dump` shows it) has an entry for `container`.
fn wait_policy(agent: &Agent, h: &Host, container: &str) -> serde_json::Value {
    let cgroup_id = h.docker.cgroup_id(container);
    let found = wait_for(Duration::from_secs(5), || {
        agent.dump()["policy"].as_array()?.iter().find(|p| p["cgroup_id"] == cgroup_id).cloned()
    });
    found.unwrap_or_else(|| panic!("no policy for {container} (cgroup {cgroup_id}):\n{}", agent.log()))
}

#[test]
fn enforce_allows_declared_services_and_refuses_the_rest_at_once() {
    let h = host();
    let agent = Agent::start(&h.cgroup, &h.pins, &services(&h, 211, "enforce"));
    h.docker.idle("client", "net", &["--label", "viking.connect_to=web"]);
    h.docker.idle("stranger", "net", &[]);
    let policy = wait_policy(&agent, &h, "client");
    assert_eq!(policy["mode"], "enforce");
    assert_eq!(policy["allowed"], serde_json::json!(["240.0.0.10"]));
    wait_policy(&agent, &h, "stranger");

    assert_eq!(h.docker.http_get("client", "240.0.0.10", 80), Ok("web-backend".into()));
    let refused = h.docker.http_get("client", "240.0.0.20", 80).expect_err("api is not declared");
    assert!(refused.contains("Permission denied"), "{refused}");
    let refused = h.docker.http_get("stranger", "240.0.0.10", 80).expect_err("nothing declared");
    assert!(refused.contains("Permission denied"), "{refused}");
    // Non-VIP traffic is never affected.
    assert_eq!(h.docker.http_get("stranger", "10.211.0.20", 80), Ok("api-backend".into()));
    assert!(agent.wait_log(r#"policy: container "stranger""#, Duration::from_secs(2)), "{}", agent.log());
    assert!(agent.log().contains(r#"undeclared service "web" (240.0.0.10:80/tcp): refused"#), "{}", agent.log());
    let dump = agent.dump();
    let refused = |name: &str| {
        dump["services"].as_array().unwrap().iter().find(|s| s["name"] == name).unwrap()["stats"]["refused_by_policy"]
            .clone()
    };
    assert_eq!((refused("web"), refused("api")), (1.into(), 1.into()), "per-service policy refusals: {dump}");
}

/// Containers started in parallel per batch: the agent sees bursts of events, as on a
/// busy host.
const PARALLEL_RUNS: usize = 4;

/// Runs `count` containers named `<prefix>-<n>` whose first action is a GET of the web VIP.
fn first_connects(h: &Host, prefix: &str, count: usize, extra: &[&str]) -> Vec<Result<String, String>> {
    let mut results = Vec::with_capacity(count);
    for batch in (0..count).collect::<Vec<_>>().chunks(PARALLEL_RUNS) {
        let outcomes: Vec<Result<String, String>> = std::thread::scope(|scope| {
            let runs: Vec<_> = batch
                .iter()
                .map(|n| {
                    let name = format!("{prefix}-{n}");
                    scope.spawn(move || h.docker.run_http_get(&name, "net", extra, "240.0.0.10", 80))
                })
                .collect();
            runs.into_iter().map(|run| run.join().expect("docker run thread")).collect()
        });
        results.extend(outcomes);
    }
    results
}

#[test]
fn in_enforce_mode_a_container_is_checked_from_its_first_instruction() {
    let h = host();
    let agent = Agent::start(&h.cgroup, &h.pins, &services(&h, 217, "enforce"));
    assert!(agent.wait_log("docker: listed containers", Duration::from_secs(10)), "{}", agent.log());
    const RUNS: usize = 20;

    // Undeclared: not one connect gets through, however early it comes.
    let undeclared = first_connects(&h, "stranger", RUNS, &[]);
    let through: Vec<&String> = undeclared.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert!(through.is_empty(), "{} of {RUNS} undeclared first connects got through:\n{}", through.len(), agent.log());
    for refused in &undeclared {
        let error = refused.as_ref().unwrap_err();
        assert!(error.contains("Permission denied"), "refused otherwise than by policy: {error}");
    }

    // Declared: the policy is in the kernel before the first instruction.
    let declared = first_connects(&h, "client", RUNS, &["--label", "viking.connect_to=web"]);
    let failed: Vec<&String> = declared.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        failed.len() <= 1,
        "{} of {RUNS} declared first connects failed: {failed:?}\n{}",
        failed.len(),
        agent.log()
    );
    assert!(declared.iter().flatten().all(|body| body == "web-backend"), "{declared:?}");

    let dump = agent.dump();
    let web = dump["services"].as_array().unwrap().iter().find(|s| s["name"] == "web").unwrap().clone();
    let scope = &dump["container_scope"];
    assert_eq!(scope["mode"], "enforce", "{dump}");
    // Every refusal is counted once: as a known container's, or by the backstop.
    let refused = web["stats"]["refused_by_policy"].as_u64().unwrap();
    assert_eq!(refused, (RUNS + failed.len()) as u64, "{dump}");
    assert!(scope["refused"].as_u64().unwrap() <= refused, "{dump}");
    // `--rm` containers leave no entry behind: only the two backends' remain.
    let entries = || agent.dump()["policy"].as_array().map_or(0, Vec::len);
    let left = wait_for(Duration::from_secs(10), || (entries() == 2).then_some(()));
    assert!(left.is_some(), "entries of removed containers remain: {}", agent.dump());
}

#[test]
fn a_label_lowers_a_mode_only_for_containers_the_operator_trusts() {
    let h = host();
    let config = services(&h, 218, "enforce");
    let agent = Agent::start(&h.cgroup, &h.pins, &config);
    h.docker.idle("escapee", "net", &["--label", "viking.policy=bypass"]);
    let policy = wait_policy(&agent, &h, "escapee");
    assert_eq!(policy["mode"], "enforce", "{policy}");
    let refused = h.docker.http_get("escapee", "240.0.0.10", 80).expect_err("still enforced");
    assert!(refused.contains("Permission denied"), "{refused}");
    assert!(
        agent.wait_log(
            r#"container "escapee": label viking.policy=bypass is not honoured: a label may only make a container stricter"#,
            Duration::from_secs(2)
        ),
        "{}",
        agent.log()
    );
    drop(agent);

    // The image on the operator's list: the label is honoured.
    let trusted = format!("{config}\n[docker.trusted]\nimages = [{:?}]\n", viking_tests::docker::IMAGE);
    let agent = Agent::start(&h.cgroup, &h.pins, &trusted);
    h.docker.idle("mesh", "net", &["--label", "viking.policy=bypass"]);
    assert_eq!(wait_policy(&agent, &h, "mesh")["mode"], "bypass");
    // Untranslated, the VIP is just an address nothing routes on the internal network.
    let untouched = h.docker.http_get("mesh", "240.0.0.10", 80).expect_err("no route to a raw VIP");
    assert!(!untouched.contains("Permission denied"), "{untouched}");
    assert_eq!(wait_policy(&agent, &h, "escapee")["mode"], "bypass", "the same label, now trusted");
}

#[test]
fn audit_allows_and_reports_undeclared_connects() {
    let h = host();
    let agent = Agent::start(&h.cgroup, &h.pins, &services(&h, 212, "audit"));
    h.docker.idle("client", "net", &["--label", "viking.connect_to=web"]);
    wait_policy(&agent, &h, "client");
    assert_eq!(h.docker.http_get("client", "240.0.0.20", 80), Ok("api-backend".into()));
    assert!(agent.wait_log(r#"policy: container "client""#, Duration::from_secs(2)), "{}", agent.log());
    assert!(
        agent.log().contains(r#"undeclared service "api" (240.0.0.20:80/tcp): allowed (audit)"#),
        "{}",
        agent.log()
    );
}

#[test]
fn stopped_containers_leave_the_policy_and_a_restarted_dockerd_is_followed() {
    let mut h = host();
    let agent = Agent::start(&h.cgroup, &h.pins, &services(&h, 213, "enforce"));
    h.docker.idle("client", "net", &["--label", "viking.connect_to=web"]);
    let cgroup_id = wait_policy(&agent, &h, "client")["cgroup_id"].clone();
    h.docker.ok(&["rm", "-f", "client"]);
    let gone = wait_for(Duration::from_secs(5), || {
        agent.dump()["policy"].as_array()?.iter().all(|p| p["cgroup_id"] != cgroup_id).then_some(())
    });
    assert!(gone.is_some(), "stopped container still has a policy: {}", agent.dump());

    h.docker.restart();
    assert!(agent.wait_log("docker reachable again", Duration::from_secs(40)), "{}", agent.log());
    // Containers died with dockerd; new ones are seen through the new event stream.
    for name in ["web-0", "api-0"] {
        h.docker.ok(&["start", name]);
    }
    h.docker.idle("after", "net", &["--label", "viking.connect_to=api"]);
    wait_policy(&agent, &h, "after");
    assert_eq!(h.docker.http_get("after", "240.0.0.20", 80), Ok("api-backend".into()));
}

#[test]
fn backend_env_overlays_map_the_same_port_to_different_services_per_container() {
    let h = host();
    let agent = Agent::start(&h.cgroup, &h.pins, &services(&h, 214, "off"));
    h.docker.idle("one", "net", &["-e", "BACKEND_APP=web;8080"]);
    h.docker.idle("two", "net", &["-e", "BACKEND_APP=api;8080"]);
    let one = wait_policy(&agent, &h, "one");
    assert_eq!(one["overlays"][0]["frontend"], "240.0.0.10:80/tcp", "{one}");
    wait_policy(&agent, &h, "two");
    // The documented ambassador address, default 240.0.0.1.
    assert_eq!(h.docker.http_get("one", "240.0.0.1", 8080), Ok("web-backend".into()));
    assert_eq!(h.docker.http_get("two", "240.0.0.1", 8080), Ok("api-backend".into()));
}

#[test]
fn bad_labels_and_env_are_reported_and_the_valid_declarations_still_apply() {
    let h = host();
    let agent = Agent::start(&h.cgroup, &h.pins, &services(&h, 215, "enforce"));
    h.docker.idle(
        "messy",
        "net",
        &[
            "--label",
            "viking.connect_to=web,no such,ghost",
            "--label",
            "viking.policy=strict",
            "-e",
            "BACKEND_X=api;99999",
            "-e",
            "BACKEND_Y=garbage",
        ],
    );
    let policy = wait_policy(&agent, &h, "messy");
    assert_eq!(policy["allowed"], serde_json::json!(["240.0.0.10"]), "{policy}");
    assert_eq!(h.docker.http_get("messy", "240.0.0.10", 80), Ok("web-backend".into()));
    let log = agent.log();
    for needle in [
        r#"container "messy": label viking.connect_to names "no such""#,
        r#"container "messy" declares service "ghost", which does not exist"#,
        r#"container "messy": label viking.policy = "strict""#,
        r#"container "messy": BACKEND_X="api;99999": port "99999" is not 1..=65535"#,
        r#"container "messy": BACKEND_Y="garbage": expected <service>;<port>"#,
    ] {
        assert!(log.contains(needle), "missing {needle:?} in:\n{log}");
    }
}

#[test]
fn a_container_resolves_a_service_name_and_connects_by_name() {
    let h = host();
    let mut config = services(&h, 216, "off");
    // The responder listens on the network's gateway, the host side of the bridge, which
    // containers reach; they get it as their nameserver with --dns.
    config.push_str("\n[dns]\nlisten = [\"10.216.0.1:53\"]\n");
    let agent = Agent::start(&h.cgroup, &h.pins, &config);
    assert!(agent.log().contains("dns responder enabled"), "{}", agent.log());
    h.docker.idle("client", "net", &["--dns", "10.216.0.1"]);

    let lookup = h.docker.ok(&["exec", "client", "nslookup", "web.service.viking"]);
    assert!(lookup.contains("240.0.0.10"), "{lookup}");
    let missing = h.docker.docker(&["exec", "client", "nslookup", "nope.service.viking"]);
    assert!(!missing.status.success() || String::from_utf8_lossy(&missing.stdout).contains("NXDOMAIN"), "{missing:?}");
    assert_eq!(h.docker.http_get("client", "web.service.viking", 80), Ok("web-backend".into()));
}
