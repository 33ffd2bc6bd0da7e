//! Consul as the source of services: registrations become VIPs within a second, every
//! agent agrees on each VIP, and Consul's failures change nothing that works.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    time::{Duration, Instant},
};

use consul_test_server::{Acl, CheckSpec, Fault, Options, Registration, Status};
use viking_tests::{
    Agent, Backend, Cgroup, Netns, PinGuard,
    client::{self, ClientOptions},
    config::{ServiceSpec, render},
    consul::{TestConsul, served, wait_served},
    pins, require_root, wait_for,
};

const ENETUNREACH: i32 = 101;
/// The issue's promise: a change in Consul reaches the kernel within a second.
const WITHIN: Duration = Duration::from_secs(1);

/// A host: cgroup, netns with backend addresses on `lo`, pins.
struct Host {
    cgroup: Cgroup,
    netns: Netns,
    pins: PinGuard,
}

fn host(backend_net: &str) -> Host {
    require_root();
    let netns = Netns::anonymous().unwrap();
    // Consul instances must have routable addresses (loopback is refused); these exist only
    // inside this test's namespace.
    netns.add_address(backend_net).unwrap();
    Host { cgroup: Cgroup::unique().unwrap(), netns, pins: pins() }
}

fn backend(host: &Host, name: &str, ip: &str) -> Backend {
    Backend::tcp(&host.netns, name, &format!("{ip}:0")).unwrap()
}

fn register(consul: &TestConsul, service: &str, id: &str, addr: SocketAddr) {
    let registration = Registration::new(format!("node-{id}"), addr.ip().to_string(), service)
        .id(id)
        .port(addr.port())
        .check(CheckSpec::passing(format!("{id}-check")));
    consul.server.register(registration).unwrap();
}

fn vip_of(agent: &Agent, name: &str) -> SocketAddr {
    let (vip, port, _) = served(agent)[name].clone();
    SocketAddr::new(vip.parse().unwrap(), port as u16)
}

#[test]
fn a_service_follows_registrations_health_and_deregistration_within_a_second() {
    let consul = TestConsul::start();
    let h = host("10.200.0.0/24");
    let b = [backend(&h, "b0", "10.200.0.1"), backend(&h, "b1", "10.200.0.2")];
    let agent = Agent::start(&h.cgroup, &h.pins, &(render(&[]) + &consul.config_section("")));

    register(&consul, "web", "web-1", b[0].addr);
    assert!(
        wait_served(&agent, WITHIN, |s| s.get("web").is_some_and(|w| w.2 == [b[0].addr.to_string()])),
        "{}",
        agent.log()
    );
    let vip = vip_of(&agent, "web");
    assert!(vip.ip().to_string().starts_with("241."), "allocated from consul.vip_range: {vip}");
    assert_eq!(vip.port(), b[0].addr.port(), "without meta, the instances' common port");
    let one = client::connect(Some(&h.cgroup), &h.netns, vip, ClientOptions::default());
    assert_eq!(client::replies(&one), ["b0"]);

    // A second instance on the same port joins the rotation. (Backends bind port 0, so the
    // two instances declare the VIP port with meta viking_port.)
    let registration = |id: &str, addr: SocketAddr| {
        Registration::new(format!("node-{id}"), addr.ip().to_string(), "web")
            .id(id)
            .port(addr.port())
            .meta("viking_port", vip.port().to_string())
            .check(CheckSpec::passing(format!("{id}-check")))
    };
    consul.server.register(registration("web-1", b[0].addr)).unwrap();
    consul.server.register(registration("web-2", b[1].addr)).unwrap();
    assert!(wait_served(&agent, WITHIN, |s| s["web"].2.len() == 2), "{:?}\n{}", served(&agent), agent.log());
    let attempts = client::connect(Some(&h.cgroup), &h.netns, vip, ClientOptions { count: 4, ..Default::default() });
    let mut replies = client::replies(&attempts);
    replies.sort();
    assert_eq!(replies, ["b0", "b0", "b1", "b1"]);

    // A failing check takes the instance out.
    consul.server.set_check_status("web-1-check", Status::Critical);
    assert!(wait_served(&agent, WITHIN, |s| s["web"].2 == [b[1].addr.to_string()]), "{:?}", served(&agent));
    let after = client::connect(Some(&h.cgroup), &h.netns, vip, ClientOptions { count: 3, ..Default::default() });
    assert_eq!(client::replies(&after), ["b1", "b1", "b1"]);

    // Deregistration removes the VIP entry ("deregister the listener").
    consul.server.deregister_service("node-web-1", "web-1").unwrap();
    consul.server.deregister_service("node-web-2", "web-2").unwrap();
    assert!(wait_served(&agent, WITHIN, |s| !s.contains_key("web")), "{:?}", served(&agent));
    let gone = client::connect(Some(&h.cgroup), &h.netns, vip, ClientOptions::default());
    assert_eq!(gone[0].errno, Some(ENETUNREACH));
}

#[test]
fn two_hosts_starting_together_agree_on_100_new_vips() {
    let consul = TestConsul::start();
    let a = host("10.201.0.0/24");
    let b = host("10.201.0.0/24");
    let section = render(&[]) + &consul.config_section("");
    let registrations: Vec<Registration> = (0..100)
        .map(|i| {
            Registration::new(format!("node-{}", i % 7), format!("10.201.0.{}", 1 + i % 7), format!("svc-{i:03}"))
                .port(8000)
                .check(CheckSpec::passing(format!("svc-{i:03}-check")))
        })
        .collect();

    // Both agents start while the 100 services appear: they allocate concurrently.
    let starter = std::thread::spawn({
        let section = section.clone();
        move || {
            let agent = Agent::start(&b.cgroup, &b.pins, &section);
            (agent, b)
        }
    });
    let agent_a = Agent::start(&a.cgroup, &a.pins, &section);
    consul.server.register_many(registrations).unwrap();
    let (agent_b, _b) = starter.join().unwrap();

    let all = |agent: &Agent| wait_served(agent, Duration::from_secs(10), |s| s.len() == 100);
    assert!(all(&agent_a), "host a: {} services\n{}", served(&agent_a).len(), agent_a.log());
    assert!(all(&agent_b), "host b: {} services\n{}", served(&agent_b).len(), agent_b.log());
    let vips_a: BTreeMap<String, String> = served(&agent_a).into_iter().map(|(n, s)| (n, s.0)).collect();
    let vips_b: BTreeMap<String, String> = served(&agent_b).into_iter().map(|(n, s)| (n, s.0)).collect();
    assert_eq!(vips_a, vips_b, "both hosts use the same VIP for every service");
    let distinct: std::collections::BTreeSet<&String> = vips_a.values().collect();
    assert_eq!(distinct.len(), 100, "no VIP serves two services");
    // And Consul's KV holds exactly those records.
    for (name, vip) in &vips_a {
        let record = consul.server.kv_get(&format!("viking/services/{name}")).expect("record");
        assert_eq!(String::from_utf8_lossy(&record.value), *vip);
    }
}

#[test]
fn consul_down_at_start_then_up() {
    let consul = TestConsul::start();
    let h = host("10.202.0.0/24");
    let b = backend(&h, "b0", "10.202.0.1");
    register(&consul, "web", "web-1", b.addr);
    consul.block_on(consul.server.stop());
    let local = ServiceSpec::tcp("local", "240.0.0.10", 80, &[b.addr]);
    let agent = Agent::start(&h.cgroup, &h.pins, &(render(std::slice::from_ref(&local)) + &consul.config_section("")));
    // The static service works while Consul is unreachable, and the error is reported.
    assert_eq!(
        client::replies(&client::connect(Some(&h.cgroup), &h.netns, local.frontend(), ClientOptions::default())),
        ["b0"]
    );
    assert!(agent.wait_log("consul: ", Duration::from_secs(3)), "{}", agent.log());
    assert!(agent.log().contains("keeping the last good state"), "{}", agent.log());

    consul.block_on(consul.server.start_again()).unwrap();
    assert!(wait_served(&agent, Duration::from_secs(40), |s| s.contains_key("web")), "{}", agent.log());
    assert!(agent.log().contains("consul reachable again"), "{}", agent.log());
}

#[test]
fn an_outage_keeps_serving_the_last_good_state_and_changes_resume_after() {
    let consul = TestConsul::start();
    let h = host("10.203.0.0/24");
    let b = [backend(&h, "b0", "10.203.0.1"), backend(&h, "b1", "10.203.0.2")];
    let mut agent = Agent::start(&h.cgroup, &h.pins, &(render(&[]) + &consul.config_section("")));
    register(&consul, "web", "web-1", b[0].addr);
    assert!(wait_served(&agent, WITHIN, |s| s.contains_key("web")), "{}", agent.log());
    let vip = vip_of(&agent, "web");

    consul.block_on(consul.server.stop());
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(client::replies(&client::connect(Some(&h.cgroup), &h.netns, vip, ClientOptions::default())), ["b0"]);
    // Even an agent restart during the outage keeps the Consul services (adopted from pins,
    // not flushed before Consul answers).
    agent.kill();
    agent.restart();
    assert_eq!(served(&agent)["web"].2, [b[0].addr.to_string()]);
    assert_eq!(client::replies(&client::connect(Some(&h.cgroup), &h.netns, vip, ClientOptions::default())), ["b0"]);

    consul.block_on(consul.server.start_again()).unwrap();
    consul
        .server
        .register(
            Registration::new("node-web-1", "10.203.0.2", "web")
                .id("web-1")
                .port(b[0].addr.port())
                .meta("viking_port", vip.port().to_string()),
        )
        .unwrap();
    let moved = format!("10.203.0.2:{}", b[0].addr.port());
    assert!(
        wait_served(&agent, Duration::from_secs(40), |s| s.get("web").is_some_and(|w| w.2 == [moved.clone()])),
        "{:?}\n{}",
        served(&agent),
        agent.log()
    );
    assert_eq!(vip_of(&agent, "web"), vip, "the VIP is stable");
}

#[test]
fn an_index_that_goes_backwards_is_reset_and_changes_keep_flowing() {
    let consul = TestConsul::start();
    let h = host("10.204.0.0/24");
    let b = [backend(&h, "b0", "10.204.0.1"), backend(&h, "b1", "10.204.0.2")];
    let agent = Agent::start(&h.cgroup, &h.pins, &(render(&[]) + &consul.config_section("")));
    register(&consul, "web", "web-1", b[0].addr);
    assert!(wait_served(&agent, WITHIN, |s| s.contains_key("web")), "{}", agent.log());

    // As after a snapshot restore: every index drops. An agent that kept blocking on its
    // old, higher index would not see the next change for the whole wait (5 min).
    consul.server.reset_index_to(1);
    register(&consul, "api", "api-1", b[1].addr);
    assert!(
        wait_served(&agent, Duration::from_secs(2), |s| s.contains_key("api")),
        "{:?}\n{}",
        served(&agent),
        agent.log()
    );
}

#[test]
fn http_429_and_errors_make_the_agent_back_off_not_spin() {
    let consul = TestConsul::start();
    let h = host("10.205.0.0/24");
    let b = backend(&h, "b0", "10.205.0.1");
    let agent = Agent::start(&h.cgroup, &h.pins, &(render(&[]) + &consul.config_section("")));
    register(&consul, "web", "web-1", b.addr);
    assert!(wait_served(&agent, WITHIN, |s| s.contains_key("web")), "{}", agent.log());

    consul.server.faults().set(Fault::TooManyRequests);
    register(&consul, "api", "api-1", b.addr);
    consul.server.clear_request_log();
    std::thread::sleep(Duration::from_secs(2));
    let requests = consul.server.request_log().len();
    // Three watches (catalog, KV, web, api); without backoff they would loop thousands of times.
    assert!(requests < 40, "{requests} requests in 2 s during 429s");
    assert!(served(&agent).contains_key("web"), "the last good state stays");

    consul.server.faults().set(Fault::Status500);
    std::thread::sleep(Duration::from_secs(1));
    consul.server.faults().clear();
    assert!(wait_served(&agent, Duration::from_secs(40), |s| s.contains_key("api")), "{}", agent.log());
}

#[test]
fn slow_responses_delay_but_do_not_lose_changes() {
    let consul = TestConsul::start();
    let h = host("10.206.0.0/24");
    let b = backend(&h, "b0", "10.206.0.1");
    let agent = Agent::start(&h.cgroup, &h.pins, &(render(&[]) + &consul.config_section("")));
    consul.server.faults().set(Fault::Delay(Duration::from_millis(300)));
    let started = Instant::now();
    register(&consul, "web", "web-1", b.addr);
    assert!(wait_served(&agent, Duration::from_secs(5), |s| s.contains_key("web")), "{}", agent.log());
    assert!(started.elapsed() >= Duration::from_millis(300), "the delay applied");
}

#[test]
fn bad_instances_are_skipped_with_a_message_and_good_ones_served() {
    let consul = TestConsul::start();
    let h = host("10.207.0.0/24");
    let b = backend(&h, "b0", "10.207.0.1");
    let agent = Agent::start(&h.cgroup, &h.pins, &(render(&[]) + &consul.config_section("")));
    let port = b.addr.port();
    let bad = |id: &str, address: &str, p: u16| {
        Registration::new("node-bad", "10.207.0.99", "web")
            .id(id)
            .port(p)
            .service_address(address)
            .meta("viking_port", "80")
    };
    consul.server.register(bad("web-vip", "241.0.0.5", port)).unwrap();
    consul.server.register(bad("web-loop", "127.0.0.1", port)).unwrap();
    consul.server.register(bad("web-zero", "10.207.0.1", 0)).unwrap();
    consul.server.register(bad("web-name", "db.internal", port)).unwrap();
    consul.server.register(bad("web-good", "10.207.0.1", port)).unwrap();
    assert!(
        wait_served(&agent, WITHIN, |s| s.get("web").is_some_and(|w| w.2 == [b.addr.to_string()])),
        "{:?}\n{}",
        served(&agent),
        agent.log()
    );
    let log = agent.log();
    for needle in [
        r#"consul service "web" instance "web-vip": address 241.0.0.5"#,
        r#"instance "web-loop": address 127.0.0.1 is loopback"#,
        r#"instance "web-zero": port 0 is not 1..=65535"#,
        r#"instance "web-name": address "db.internal" is not an IP address"#,
    ] {
        assert!(log.contains(needle), "missing {needle:?} in:\n{log}");
    }
    let vip = vip_of(&agent, "web");
    assert_eq!(vip.port(), 80, "meta viking_port");
    assert_eq!(client::replies(&client::connect(Some(&h.cgroup), &h.netns, vip, ClientOptions::default())), ["b0"]);
}

#[test]
fn acl_token_is_sent_and_vips_are_released_after_the_grace_period() {
    let consul = TestConsul::start_with(Options { acl: Some(Acl::new().read_write("s3cret")), ..Options::default() });
    let h = host("10.208.0.0/24");
    let b = backend(&h, "b0", "10.208.0.1");
    let section = consul.config_section("token = \"s3cret\"\nvip_release_after_seconds = 1");
    let agent = Agent::start(&h.cgroup, &h.pins, &(render(&[]) + &section));
    register(&consul, "web", "web-1", b.addr);
    assert!(wait_served(&agent, WITHIN, |s| s.contains_key("web")), "{}", agent.log());
    assert!(
        consul.server.request_log().iter().all(|r| r.token.as_deref() == Some("s3cret")),
        "every request carries the token"
    );
    assert!(consul.server.kv_get("viking/services/web").is_some());

    consul.server.deregister_service("node-web-1", "web-1").unwrap();
    let released =
        wait_for(Duration::from_secs(8), || consul.server.kv_get("viking/services/web").is_none().then_some(()));
    assert!(released.is_some(), "VIP not released after the grace period:\n{}", agent.log());
    assert!(agent.wait_log(r#"released the VIP of consul service "web""#, Duration::from_secs(2)), "{}", agent.log());
}
