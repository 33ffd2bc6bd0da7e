//! Passive outlier ejection: the kernel sees each redirected TCP connect fail and stops
//! choosing the backend, long before a health check would notice.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use viking_tests::{
    Agent, Backend, addrs,
    backends::tcp_backends,
    client::{self, Attempt, ClientOptions, Mode},
    config::{ServiceSpec, render},
    wait_for, world,
};

/// ECONNREFUSED.
const REFUSED: i32 = 111;

/// A TCP service over `backends` with these `outlier` settings.
fn web(backends: &[SocketAddr], outlier: &str) -> ServiceSpec {
    let mut web = ServiceSpec::tcp("web", "240.0.0.10", 80, backends);
    web.outlier = Some(outlier.into());
    web
}

/// The dump's entry for the backend at `addr`.
fn backend_entry(agent: &Agent, addr: SocketAddr) -> serde_json::Value {
    let dump = agent.dump();
    let backends = dump["services"][0]["backend_stats"].as_array().cloned().unwrap_or_default();
    backends.into_iter().find(|b| b["address"] == addr.to_string()).unwrap_or_else(|| panic!("{addr} in {dump}"))
}

fn failed(attempts: &[Attempt]) -> Vec<&Attempt> {
    attempts.iter().filter(|a| a.error.is_some()).collect()
}

fn replies_from(attempts: &[Attempt], name: &str) -> usize {
    attempts.iter().filter(|a| a.reply.as_deref() == Some(name)).count()
}

#[test]
fn a_killed_backend_is_ejected_after_three_refused_connects_and_served_again_after_the_ejection() {
    let w = world();
    let mut b = tcp_backends(&w.netns, 3);
    let service = web(&addrs(&b), "{ consecutive_failures = 3, ejection_seconds = 1 }");
    let agent = Agent::start(&w.cgroup, &w.pins, &render(std::slice::from_ref(&service)));

    // A steady stream of new connections; b1's process dies in the middle of it.
    let options = ClientOptions { count: 600, interval_ms: 5, ..Default::default() };
    let load = client::spawn(Some(&w.cgroup), &w.netns, service.frontend(), Mode::Connect(options));
    std::thread::sleep(Duration::from_millis(500));
    let dead = b.remove(1);
    let dead_addr = dead.addr;
    drop(dead);
    let attempts = client::collect(load);

    let failures = failed(&attempts);
    println!("killed backend: {} of {} connects failed", failures.len(), attempts.len());
    // Refused, or reset when a connect sat in the dying listener's accept queue.
    assert!(failures.iter().all(|a| matches!(a.errno, Some(REFUSED | 104))), "{failures:?}");
    assert!(!failures.is_empty(), "the kill happened under load, so some connects reached the dead backend");
    assert!(failures.len() <= 20, "{} of {} connects failed; at most 20 may", failures.len(), attempts.len());
    let entry = backend_entry(&agent, dead_addr);
    assert!(entry["ejections"].as_u64() >= Some(1), "{entry}");
    assert!(entry["failures"].as_u64() >= Some(3), "{entry}");
    assert!(entry["skipped"].as_u64() > Some(0), "connects that chose it went elsewhere: {entry}");

    // Back on the same address: once its ejection is over it gets connects again.
    b.insert(1, Backend::tcp(&w.netns, "b1", &dead_addr.to_string()).expect("restart b1"));
    assert!(
        wait_for(Duration::from_secs(10), || backend_entry(&agent, dead_addr)["ejected_for_ms"]
            .is_null()
            .then_some(()))
        .is_some(),
        "{}",
        backend_entry(&agent, dead_addr)
    );
    let after = client::connect(
        Some(&w.cgroup),
        &w.netns,
        service.frontend(),
        ClientOptions { count: 30, ..Default::default() },
    );
    assert!(failed(&after).is_empty(), "{after:?}");
    assert_eq!(replies_from(&after, "b1"), 10, "round robin again over all three: {after:?}");
}

#[test]
fn with_ejection_off_a_dead_backend_keeps_its_share_of_connects() {
    let w = world();
    let mut b = tcp_backends(&w.netns, 3);
    let service = web(&addrs(&b), "{ consecutive_failures = 0 }");
    let agent = Agent::start(&w.cgroup, &w.pins, &render(std::slice::from_ref(&service)));
    let dead_addr = b.remove(1).addr;

    let attempts = client::connect(
        Some(&w.cgroup),
        &w.netns,
        service.frontend(),
        ClientOptions { count: 60, ..Default::default() },
    );
    assert_eq!(failed(&attempts).len(), 20, "one third, as without Viking's ejection");
    let entry = backend_entry(&agent, dead_addr);
    assert_eq!(entry["failures"], 20, "failures are still counted: {entry}");
    assert_eq!(entry["ejections"], 0, "{entry}");
}

#[test]
fn a_blackholed_backend_is_ejected_once_its_syns_time_out() {
    let w = world();
    w.netns.add_black_hole("10.77.0.1/24", "10.77.0.2").expect("black hole");
    let b = tcp_backends(&w.netns, 2);
    let hole: SocketAddr = "10.77.0.2:80".parse().unwrap();
    let service = web(&[b[0].addr, hole, b[1].addr], "{ consecutive_failures = 3, ejection_seconds = 30 }");
    let agent = Agent::start(&w.cgroup, &w.pins, &render(std::slice::from_ref(&service)));

    // Four clients, each connecting every 20 ms and giving up on a connect after 2 s.
    let started = Instant::now();
    let options = ClientOptions { count: 100, interval_ms: 20, ..Default::default() };
    let clients: Vec<_> =
        (0..4).map(|_| client::spawn(Some(&w.cgroup), &w.netns, service.frontend(), Mode::Connect(options))).collect();
    let attempts: Vec<Attempt> = clients.into_iter().flat_map(client::collect).collect();
    let failures = failed(&attempts);
    println!(
        "black hole: {} of {} connects failed (each after the client's 2 s timeout), {:.1} s",
        failures.len(),
        attempts.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(!failures.is_empty(), "connects reached the black hole before it was ejected");
    assert!(failures.len() <= 20, "{} of {} connects failed", failures.len(), attempts.len());
    let entry = backend_entry(&agent, hole);
    assert_eq!(entry["ejections"], 1, "{entry}");
    assert!(entry["ejected_for_ms"].as_u64() > Some(0), "still ejected: {entry}");
}

#[test]
fn at_most_half_of_the_backends_are_ejected_and_a_fully_ejected_service_still_connects() {
    let w = world();
    let mut b = tcp_backends(&w.netns, 3);
    let service = web(&addrs(&b), "{ consecutive_failures = 2, ejection_seconds = 60 }");
    let agent = Agent::start(&w.cgroup, &w.pins, &render(std::slice::from_ref(&service)));
    let dead = [b.remove(2).addr, b.remove(1).addr];

    let attempts = client::connect(
        Some(&w.cgroup),
        &w.netns,
        service.frontend(),
        ClientOptions { count: 60, ..Default::default() },
    );
    let ejected = dead.iter().filter(|addr| backend_entry(&agent, **addr)["ejected_for_ms"].is_u64()).count();
    assert_eq!(ejected, 1, "50% of 3 backends: one may be ejected, not two");
    assert!(failed(&attempts).len() > 2, "the dead backend that stays in keeps failing");

    // Panic mode: when every backend is ejected, connects still go to one of them.
    let service =
        web(&[b[0].addr, dead[1]], "{ consecutive_failures = 2, ejection_seconds = 60, max_ejection_percent = 100 }");
    agent.write_config(&render(std::slice::from_ref(&service)));
    let applied = || (agent.dump()["services"][0]["outlier"]["max_ejection_percent"] == 100).then_some(());
    assert!(wait_for(Duration::from_secs(5), applied).is_some(), "{}", agent.dump());
    let live = b.remove(0);
    let live_addr = live.addr;
    drop(live);
    let refused = client::connect(
        Some(&w.cgroup),
        &w.netns,
        service.frontend(),
        ClientOptions { count: 10, ..Default::default() },
    );
    assert_eq!(failed(&refused).len(), 10);
    assert!(backend_entry(&agent, live_addr)["ejected_for_ms"].is_u64(), "both ejected now");
    b.push(Backend::tcp(&w.netns, "b0", &live_addr.to_string()).expect("restart b0"));
    let panic = client::connect(
        Some(&w.cgroup),
        &w.netns,
        service.frontend(),
        ClientOptions { count: 10, ..Default::default() },
    );
    assert!(replies_from(&panic, "b0") >= 3, "the revived backend is chosen although ejected: {panic:?}");
}
