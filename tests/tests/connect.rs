//! A process in the cgroup connects to a VIP; the kernel program picks the backend.

use viking_tests::{
    Agent, addrs,
    backends::{Backend, tcp_backends},
    client::{self, ClientOptions},
    config::{ServiceSpec, render},
    world,
};

const ENETUNREACH: i32 = 101;
const ECONNREFUSED: i32 = 111;

#[test]
fn round_robin_alternates_exactly_for_one_client() {
    let w = world();
    let backends = tcp_backends(&w.netns, 3);
    let web = ServiceSpec::tcp("web", "240.0.0.10", 80, &addrs(&backends));
    let _agent = Agent::start(&w.cgroup, &w.pins, &render(std::slice::from_ref(&web)));

    let attempts =
        client::connect(Some(&w.cgroup), &w.netns, web.frontend(), ClientOptions { count: 12, ..Default::default() });
    let replies = client::replies(&attempts);
    let first: Vec<&str> = replies[..3].iter().map(String::as_str).collect();
    let mut sorted = first.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, ["b0", "b1", "b2"], "the first three connects reach three different backends");
    for (i, reply) in replies.iter().enumerate() {
        assert_eq!(reply, first[i % 3], "connect {i} breaks the rotation: {replies:?}");
    }
    assert!(backends.iter().all(|b| b.served() == 4), "each backend served 4 connects");
}

#[test]
fn connects_that_are_not_to_a_vip_are_untouched() {
    let w = world();
    let backends = tcp_backends(&w.netns, 2);
    let web = ServiceSpec::tcp("web", "240.0.0.10", 80, &[backends[0].addr]);
    let _agent = Agent::start(&w.cgroup, &w.pins, &render(&[web]));

    // A real address goes where it was sent, not to the VIP's backend.
    let direct = client::connect(Some(&w.cgroup), &w.netns, backends[1].addr, ClientOptions::default());
    assert_eq!(client::replies(&direct), ["b1"]);
    // The VIP on another port is not a frontend: the netns has no route, as without Viking.
    let other_port =
        client::connect(Some(&w.cgroup), &w.netns, "240.0.0.10:81".parse().unwrap(), ClientOptions::default());
    assert_eq!(other_port[0].errno, Some(ENETUNREACH), "{other_port:?}");
    // UDP to the TCP frontend is not a frontend either.
    let udp = client::connect(
        Some(&w.cgroup),
        &w.netns,
        "240.0.0.10:80".parse().unwrap(),
        ClientOptions { udp: true, ..Default::default() },
    );
    assert_eq!(udp[0].errno, Some(ENETUNREACH), "{udp:?}");
}

#[test]
fn processes_outside_the_cgroup_are_not_redirected() {
    let w = world();
    let backends = tcp_backends(&w.netns, 1);
    let web = ServiceSpec::tcp("web", "240.0.0.10", 80, &addrs(&backends));
    let _agent = Agent::start(&w.cgroup, &w.pins, &render(std::slice::from_ref(&web)));

    let outside = client::connect(None, &w.netns, web.frontend(), ClientOptions::default());
    assert_eq!(outside[0].errno, Some(ENETUNREACH), "{outside:?}");
    let inside = client::connect(Some(&w.cgroup), &w.netns, web.frontend(), ClientOptions::default());
    assert_eq!(client::replies(&inside), ["b0"]);
}

#[test]
fn a_vip_without_backends_refuses_at_once() {
    let w = world();
    let empty = ServiceSpec::tcp("empty", "240.0.0.11", 80, &[]);
    let _agent = Agent::start(&w.cgroup, &w.pins, &render(std::slice::from_ref(&empty)));

    let attempts =
        client::connect(Some(&w.cgroup), &w.netns, empty.frontend(), ClientOptions { count: 5, ..Default::default() });
    for attempt in &attempts {
        assert_eq!(attempt.errno, Some(ECONNREFUSED), "{attempt:?}");
        assert!(attempt.elapsed_us < 50_000, "refusal took {} us", attempt.elapsed_us);
    }
    let dump = _agent.dump();
    assert_eq!(dump["services"][0]["stats"]["refused_no_backend"], 5);
}

#[test]
fn connected_udp_sockets_are_redirected() {
    let w = world();
    let dns =
        [Backend::udp(&w.netns, "u0", "127.0.0.1:0").unwrap(), Backend::udp(&w.netns, "u1", "127.0.0.1:0").unwrap()];
    let mut spec = ServiceSpec::tcp("dns", "240.0.0.53", 53, &addrs(&dns));
    spec.protocol = "udp";
    let _agent = Agent::start(&w.cgroup, &w.pins, &render(std::slice::from_ref(&spec)));

    let attempts = client::connect(
        Some(&w.cgroup),
        &w.netns,
        spec.frontend(),
        ClientOptions { count: 4, udp: true, ..Default::default() },
    );
    assert_eq!(client::replies(&attempts), ["u0", "u1", "u0", "u1"]);
}
