//! Consul at more than a handful of services: the agent watches node by node (two
//! queries per node, whatever the number of services), over HTTPS they share one HTTP/2
//! connection, a new instance waits for a checks answer read after it, missing VIPs are
//! allocated many per transaction, and a dev agent's loopback instances are backends on
//! its own node only.

use std::time::Duration;

use consul_test_server::{CheckSpec, Fault, Options, Registration, Status};
use viking_tests::{
    Agent, Backend,
    client::{self, ClientOptions},
    config::render,
    consul::{TestConsul, served, wait_served},
    wait_for, world,
};

/// Services registered for the connection test, on [`NODES`] nodes.
const SERVICES: u32 = 1_000;
/// The nodes [`instance`] spreads one copy of the services over.
const NODES: usize = 10;

fn instance(index: u32, copy: u32) -> Registration {
    let name = format!("svc-{index:04}");
    let address = format!("10.{}.{}.{}", 210 + copy, index / 250, 1 + index % 250);
    Registration::new(format!("node-{copy}-{}", index % 10), &address, &name)
        .id(format!("{name}-{copy}"))
        .service_address(&address)
        .port(8080)
        .check(CheckSpec::passing(format!("{name}-{copy}-check")))
}

/// The agent's blocking queries once synced: the node list and two per node (the VIP
/// records' query, paced at 5 s, comes later).
fn queries_for(nodes: usize) -> usize {
    2 * nodes + 1
}

#[test]
fn over_https_a_thousand_services_cost_two_queries_per_node_on_one_connection() {
    let consul = TestConsul::start_with(Options { tls: true, ..Options::default() });
    let w = world();
    consul.server.register_many((0..SERVICES).map(|i| instance(i, 0))).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(&w.cgroup, &w.pins, &(render(&[]) + &consul.tls_config_section(dir.path(), "")));
    assert!(
        wait_served(&agent, Duration::from_secs(30), |s| s.len() == SERVICES as usize),
        "{} services\n{}",
        served(&agent).len(),
        agent.log()
    );
    // Once synced, every node has its two blocking queries open, and nothing per service.
    let watching = wait_for(Duration::from_secs(20), || {
        (consul.server.open_blocking_queries() >= queries_for(NODES)).then_some(())
    });
    assert!(watching.is_some(), "{} blocking queries", consul.server.open_blocking_queries());
    std::thread::sleep(Duration::from_millis(200));
    let open = consul.server.open_blocking_queries();
    assert!((queries_for(NODES)..=queries_for(NODES) + 1).contains(&open), "{open} blocking queries");
    // 21 or 22 streams on one HTTP/2 connection, plus one connection for the writes (KV,
    // transactions).
    let connections = consul.server.open_connections();
    assert!((1..=2).contains(&connections), "{connections} connections to Consul for {SERVICES} services");

    // The VIPs were allocated 32 per transaction, not key by key, and no service was read
    // on its own.
    let log = consul.server.request_log();
    assert!(!log.iter().any(|r| r.path.starts_with("/v1/health/service/")), "no per-service query");
    let transactions = log.iter().filter(|r| r.method == "PUT" && r.path == "/v1/txn").count();
    let single_writes = log.iter().filter(|r| r.method == "PUT" && r.path.starts_with("/v1/kv/")).count();
    assert_eq!(transactions, SERVICES.div_ceil(32) as usize, "one transaction per 32 services");
    assert_eq!(single_writes, 0, "no race, so no key-by-key allocation");

    // A change still reaches the kernel at once.
    consul.server.register(instance(17, 1)).unwrap();
    assert!(
        wait_served(&agent, Duration::from_secs(1), |s| s["svc-0017"].2.len() == 2),
        "{:?}",
        served(&agent).get("svc-0017")
    );
}

#[test]
fn over_https_without_http2_every_watch_has_its_own_connection_and_changes_still_arrive() {
    // A TLS-terminating proxy in front of Consul may offer HTTP/1.1 only.
    const FEW: u32 = 30;
    let queries = queries_for(NODES);
    let consul = TestConsul::start_with(Options { tls: true, http2: false, ..Options::default() });
    let w = world();
    consul.server.register_many((0..FEW).map(|i| instance(i, 0))).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(&w.cgroup, &w.pins, &(render(&[]) + &consul.tls_config_section(dir.path(), "")));
    assert!(
        wait_served(&agent, Duration::from_secs(20), |s| s.len() == FEW as usize),
        "{:?}\n{}",
        served(&agent),
        agent.log()
    );
    let watching =
        wait_for(Duration::from_secs(20), || (consul.server.open_blocking_queries() >= queries).then_some(()));
    assert!(watching.is_some(), "{} blocking queries", consul.server.open_blocking_queries());
    assert!(consul.server.open_connections() >= queries, "HTTP/1.1: one connection per outstanding query");
    assert!(agent.log().contains("does not offer HTTP/2"), "the fallback is logged\n{}", agent.log());
    consul.server.register(instance(7, 1)).unwrap();
    assert!(
        wait_served(&agent, Duration::from_secs(2), |s| s["svc-0007"].2.len() == 2),
        "{:?}",
        served(&agent).get("svc-0007")
    );
}

/// An instance of `svc-<index>` on one of four nodes with fixed addresses (a registration
/// that leaves its node unchanged does not touch Consul's nodes table).
fn on_node(index: u32, copy: u32) -> Registration {
    let name = format!("svc-{index:04}");
    let node = (index + copy) % 4;
    Registration::new(format!("node-{node}"), format!("10.220.0.{}", node + 1), &name)
        .id(format!("{name}-{copy}"))
        .service_address(format!("10.{}.0.{}", 221 + copy, 1 + index))
        .port(8080)
        .check(CheckSpec::passing(format!("{name}-{copy}-check")))
}

#[test]
fn a_change_made_during_the_first_sync_is_not_lost() {
    const SERVICES: u32 = 40;
    let consul = TestConsul::start();
    let w = world();
    consul.server.register_many((0..SERVICES).map(|i| on_node(i, 0))).unwrap();
    // Hold one node's first checks read: the other nodes are read, this one is not yet,
    // and what changes now must reach the kernel all the same.
    consul.server.faults().set_for("/v1/health/node/node-3", Fault::Hang);
    let agent = Agent::start(&w.cgroup, &w.pins, &(render(&[]) + &consul.config_section("")));
    let held = wait_for(Duration::from_secs(10), || {
        consul.server.request_log().iter().any(|r| r.path == "/v1/health/node/node-3").then_some(())
    });
    assert!(held.is_some(), "the agent never read node-3's checks\n{}", agent.log());
    assert!(served(&agent).is_empty(), "nothing is served before every node is read");
    consul.server.register(on_node(3, 1)).unwrap();
    assert_eq!(consul.server.set_check_status("svc-0005-0-check", Status::Critical), 1);
    consul.server.faults().clear();

    let expected = |s: &viking_tests::consul::Served| {
        // svc-0005 keeps its VIP, with no backend while none passes.
        s.len() == SERVICES as usize && s["svc-0003"].2.len() == 2 && s["svc-0005"].2.is_empty()
    };
    assert!(
        wait_served(&agent, Duration::from_secs(5), expected),
        "a change made during the first sync was lost: {:?}\n{}",
        served(&agent),
        agent.log()
    );
    let log = consul.server.request_log();
    let first_node_reads =
        log.iter().filter(|r| r.path.starts_with("/v1/catalog/node/") && r.index_param.is_none()).count();
    assert_eq!(first_node_reads, 4, "one first read per node");
    assert!(!log.iter().any(|r| r.path.starts_with("/v1/health/service/")), "no service is read on its own");
}

#[test]
fn a_new_instance_is_not_served_before_its_checks_are_read() {
    const SERVICES: u32 = 8;
    let consul = TestConsul::start();
    let w = world();
    consul.server.register_many((0..SERVICES).map(|i| on_node(i, 0))).unwrap();
    let agent = Agent::start(&w.cgroup, &w.pins, &(render(&[]) + &consul.config_section("")));
    assert!(wait_served(&agent, Duration::from_secs(10), |s| s.len() == SERVICES as usize), "{}", agent.log());

    // A new instance of svc-0003 on node-0 whose check starts critical, as Consul's checks
    // do. The agent sees the node's new service list; the checks it then asks for are held.
    consul.server.faults().set_for("/v1/health/node/node-0", Fault::Hang);
    consul.server.clear_request_log();
    let starting = on_node(3, 1).check(CheckSpec::critical("svc-0003-1-starting"));
    consul.server.register(starting).unwrap();
    let asked = wait_for(Duration::from_secs(5), || {
        let log = consul.server.request_log();
        log.iter().any(|r| r.path == "/v1/health/node/node-0" && r.index_param.is_none()).then_some(())
    });
    assert!(asked.is_some(), "the new instance made the agent read node-0's checks again\n{}", agent.log());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(served(&agent)["svc-0003"].2.len(), 1, "not served while its checks are unknown");
    consul.server.faults().clear();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(served(&agent)["svc-0003"].2.len(), 1, "not served while its check is critical");
    consul.server.set_check_status("svc-0003-1-starting", Status::Passing);
    assert!(
        wait_served(&agent, Duration::from_secs(2), |s| s["svc-0003"].2.len() == 2),
        "{:?}",
        served(&agent).get("svc-0003")
    );
}

#[test]
fn a_dev_agents_loopback_instances_are_backends_on_its_own_node_only() {
    let consul = TestConsul::start_with(Options { dev_mode: true, node_name: "dev-node".into(), ..Options::default() });
    let w = world();
    let backend = Backend::tcp(&w.netns, "b0", "127.0.0.1:0").unwrap();
    let register = |node: &str, service: &str, port: u16| {
        let registration = Registration::new(node, "127.0.0.1", service)
            .id(format!("{service}-1"))
            .port(port)
            .check(CheckSpec::passing(format!("{service}-check")));
        consul.server.register(registration).unwrap();
    };
    register("dev-node", "web", backend.addr.port());
    register("other-node", "remote", 9);
    let agent = Agent::start(&w.cgroup, &w.pins, &(render(&[]) + &consul.config_section("")));

    let local = backend.addr.to_string();
    assert!(
        wait_served(&agent, Duration::from_secs(5), |s| s.get("web").is_some_and(|web| web.2 == [local.clone()])),
        "{:?}\n{}",
        served(&agent),
        agent.log()
    );
    let (vip, port, _) = served(&agent)["web"].clone();
    let to = std::net::SocketAddr::new(vip.parse().unwrap(), port as u16);
    assert_eq!(client::replies(&client::connect(Some(&w.cgroup), &w.netns, to, ClientOptions::default())), ["b0"]);

    // The same address on another node is another host's loopback: refused, and said why.
    assert!(!served(&agent).contains_key("remote"), "{:?}", served(&agent));
    let why = "consul service \"remote\" instance \"remote-1\": address 127.0.0.1 is loopback on node \"other-node\", \
               which is not this host's Consul node \"dev-node\"; instance skipped";
    assert!(agent.wait_log(why, Duration::from_secs(2)), "{}", agent.log());
}
