//! Backend choice: weights, random spread, least connections, client affinity, and the
//! per-backend counters that show it.

use std::{collections::BTreeMap, net::SocketAddr, time::Duration};

use viking_tests::{
    Agent, addrs,
    backends::tcp_backends,
    client::{self, ClientOptions, Mode},
    config::{ServiceSpec, render},
    wait_for, world,
};

fn tally(replies: &[String]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for reply in replies {
        *counts.entry(reply.clone()).or_default() += 1;
    }
    counts
}

#[test]
fn weights_3_to_1_give_three_quarters_of_10k_connects() {
    let w = world();
    let b = tcp_backends(&w.netns, 2);
    let mut web = ServiceSpec::tcp("web", "240.0.0.10", 80, &addrs(&b));
    web.algorithm = "weighted";
    web.backends[0].1 = 3;
    let agent = Agent::start(&w.cgroup, &w.pins, &render(&[web.clone()]));

    let attempts = client::connect(
        Some(&w.cgroup),
        &w.netns,
        web.frontend(),
        ClientOptions { count: 10_000, ..Default::default() },
    );
    let counts = tally(&client::replies(&attempts));
    let share = counts["b0"] as f64 / 10_000.0;
    assert!((share - 0.75).abs() < 0.01, "b0 got {share:.4} of connects: {counts:?}");

    let dump = agent.dump();
    let stats = &dump["services"][0]["backend_stats"];
    assert_eq!(stats[0]["weight"], 3, "{dump}");
    assert_eq!(stats[0]["connects"], counts["b0"] as u64, "per-backend counters match: {dump}");
    assert_eq!(stats[1]["connects"], counts["b1"] as u64);
}

#[test]
fn random_spreads_evenly() {
    let w = world();
    let b = tcp_backends(&w.netns, 4);
    let mut web = ServiceSpec::tcp("web", "240.0.0.10", 80, &addrs(&b));
    web.algorithm = "random";
    let _agent = Agent::start(&w.cgroup, &w.pins, &render(&[web.clone()]));

    let n = 4000;
    let attempts =
        client::connect(Some(&w.cgroup), &w.netns, web.frontend(), ClientOptions { count: n, ..Default::default() });
    let counts = tally(&client::replies(&attempts));
    // Chi-square with 3 degrees of freedom; 16.27 is the 0.1% critical value.
    let expected = f64::from(n) / 4.0;
    let chi2: f64 = counts.values().map(|c| (*c as f64 - expected).powi(2) / expected).sum();
    assert_eq!(counts.len(), 4, "{counts:?}");
    assert!(chi2 < 16.27, "not uniform: chi2 = {chi2:.2}, {counts:?}");
}

#[test]
fn least_conn_sends_new_connects_to_backends_with_fewer_open_connections() {
    let w = world();
    let b = tcp_backends(&w.netns, 3);
    let mut web = ServiceSpec::tcp("web", "240.0.0.10", 80, &[b[0].addr]);
    web.algorithm = "least_conn";
    let agent = Agent::start(&w.cgroup, &w.pins, &render(&[web.clone()]));

    // Client A opens 4 connections to b0 (the only backend) and keeps them open.
    let holder = client::spawn(
        Some(&w.cgroup),
        &w.netns,
        web.frontend(),
        Mode::Connect(ClientOptions { count: 4, hold_ms: 4000, ..Default::default() }),
    );
    let active_of = |dump: &serde_json::Value, i: usize| dump["services"][0]["backend_stats"][i]["active"].as_u64();
    assert!(
        wait_for(Duration::from_secs(3), || (active_of(&agent.dump(), 0) == Some(4)).then_some(())).is_some(),
        "{}",
        agent.dump()
    );

    // b1 and b2 join. Client B's 4 held connects go to them, none to the busy b0.
    web.backends = vec![(b[0].addr, 1), (b[1].addr, 1), (b[2].addr, 1)];
    agent.write_config(&render(&[web.clone()]));
    assert!(wait_for(Duration::from_secs(2), || (agent.dump()["services"][0]["slots"] == 3).then_some(())).is_some());
    let attempts = client::connect(
        Some(&w.cgroup),
        &w.netns,
        web.frontend(),
        ClientOptions { count: 4, hold_ms: 200, ..Default::default() },
    );
    let counts = tally(&client::replies(&attempts));
    assert_eq!(counts.get("b0"), None, "the busiest backend got new connects: {counts:?}");
    assert_eq!((counts["b1"], counts["b2"]), (2, 2), "{counts:?}");

    // When the sockets close, the counts go back to zero (socket release hook).
    client::collect(holder);
    let drained = wait_for(Duration::from_secs(3), || {
        let dump = agent.dump();
        (0..3).all(|i| active_of(&dump, i) == Some(0)).then_some(())
    });
    assert!(drained.is_some(), "open connections not released: {}", agent.dump());
}

#[test]
fn affinity_keeps_each_client_on_one_backend_until_it_leaves() {
    let w = world();
    let other = w.cgroup.child("other-client").unwrap();
    let b = tcp_backends(&w.netns, 3);
    let mut web = ServiceSpec::tcp("web", "240.0.0.10", 80, &addrs(&b));
    web.affinity_seconds = 60;
    let agent = Agent::start(&w.cgroup, &w.pins, &render(&[web.clone()]));

    let many = ClientOptions { count: 10, ..Default::default() };
    let first = client::replies(&client::connect(Some(&w.cgroup), &w.netns, web.frontend(), many));
    assert!(first.iter().all(|r| *r == first[0]), "round-robin overridden by affinity: {first:?}");
    let again = client::replies(&client::connect(Some(&w.cgroup), &w.netns, web.frontend(), many));
    assert!(again.iter().all(|r| *r == first[0]), "a new process of the same client keeps its backend: {again:?}");
    let theirs = client::replies(&client::connect(Some(&other), &w.netns, web.frontend(), many));
    assert!(theirs.iter().all(|r| *r == theirs[0]), "another client has its own: {theirs:?}");

    // The client's backend leaves the service: it moves to another one and sticks there.
    let kept: Vec<(SocketAddr, u16)> = b.iter().filter(|x| x.name != first[0]).map(|x| (x.addr, 1)).collect();
    web.backends = kept;
    agent.write_config(&render(&[web.clone()]));
    assert!(wait_for(Duration::from_secs(2), || (agent.dump()["services"][0]["slots"] == 2).then_some(())).is_some());
    let moved = client::replies(&client::connect(Some(&w.cgroup), &w.netns, web.frontend(), many));
    assert!(moved[0] != first[0] && moved.iter().all(|r| *r == moved[0]), "{first:?} -> {moved:?}");
    drop(other);
}
