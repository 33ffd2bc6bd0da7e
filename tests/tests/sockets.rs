//! Socket semantics beyond TCP connect on IPv4: getpeername, unconnected UDP, dual-stack
//! sockets, IPv6 VIPs, UDP sockets whose backend goes away.

use std::time::Duration;

use viking_tests::{
    Agent, Backend, Netns, addrs,
    agent::dumped_backends,
    backends::tcp_backends,
    client::{self, ClientOptions, Mode},
    config::{ServiceSpec, render},
    wait_for, world,
};

fn udp_backends(netns: &Netns, n: usize) -> Vec<Backend> {
    (0..n).map(|i| Backend::udp(netns, &format!("u{i}"), "127.0.0.1:0").unwrap()).collect()
}

#[test]
fn getpeername_returns_the_vip_not_the_backend() {
    let w = world();
    let tcp = tcp_backends(&w.netns, 1);
    let udp = udp_backends(&w.netns, 1);
    let web = ServiceSpec::tcp("web", "240.0.0.10", 80, &addrs(&tcp));
    let dns = ServiceSpec::udp("dns", "240.0.0.53", 53, &addrs(&udp));
    let _agent = Agent::start(&w.cgroup, &w.pins, &render(&[web.clone(), dns.clone()]));

    let attempts = client::connect(Some(&w.cgroup), &w.netns, web.frontend(), ClientOptions::default());
    assert_eq!(attempts[0].reply.as_deref(), Some("b0"), "{attempts:?}");
    assert_eq!(attempts[0].peer.as_deref(), Some("240.0.0.10:80"), "TCP getpeername");
    let attempts =
        client::connect(Some(&w.cgroup), &w.netns, dns.frontend(), ClientOptions { udp: true, ..Default::default() });
    assert_eq!(attempts[0].reply.as_deref(), Some("u0"), "{attempts:?}");
    assert_eq!(attempts[0].peer.as_deref(), Some("240.0.0.53:53"), "connected UDP getpeername");
}

#[test]
fn unconnected_udp_replies_come_from_the_vip_and_one_socket_sticks_to_one_backend() {
    let w = world();
    let udp = udp_backends(&w.netns, 3);
    let dns = ServiceSpec::udp("dns", "240.0.0.53", 53, &addrs(&udp));
    let _agent = Agent::start(&w.cgroup, &w.pins, &render(std::slice::from_ref(&dns)));

    let mut seen_backends = std::collections::BTreeSet::new();
    for _ in 0..12 {
        let attempts = client::run(&w.cgroup, &w.netns, dns.frontend(), Mode::Sendto { count: 5 });
        let replies = client::replies(&attempts);
        for attempt in &attempts {
            assert_eq!(attempt.peer.as_deref(), Some("240.0.0.53:53"), "recvfrom shows the VIP: {attempt:?}");
        }
        assert!(replies.iter().all(|r| *r == replies[0]), "one socket, one backend: {replies:?}");
        seen_backends.insert(replies[0].clone());
    }
    assert!(seen_backends.len() >= 2, "different sockets spread over backends: {seen_backends:?}");
}

#[test]
fn a_dual_stack_socket_reaches_an_ipv4_vip_through_its_v4_mapped_address() {
    let w = world();
    let tcp = tcp_backends(&w.netns, 2);
    let web = ServiceSpec::tcp("web", "240.0.0.10", 80, &addrs(&tcp));
    let _agent = Agent::start(&w.cgroup, &w.pins, &render(&[web]));

    // What Java does: an AF_INET6 socket connecting to ::ffff:a.b.c.d.
    let script = r#"
for _ in range(4):
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.connect(("::ffff:240.0.0.10", 80))
    print(s.recv(100).decode().strip(), s.getpeername()[0], s.getpeername()[1])
    s.close()
"#;
    let lines: Vec<String> = w.python(script).lines().map(str::to_owned).collect();
    assert_eq!(
        lines,
        ["b0 ::ffff:240.0.0.10 80", "b1 ::ffff:240.0.0.10 80", "b0 ::ffff:240.0.0.10 80", "b1 ::ffff:240.0.0.10 80"]
    );
}

#[test]
fn ipv6_vips_are_balanced_over_ipv6_backends() {
    let w = world();
    let backends: Vec<Backend> = (0..2).map(|i| Backend::tcp(&w.netns, &format!("b{i}"), "[::1]:0").unwrap()).collect();
    let udp = Backend::udp(&w.netns, "u0", "[::1]:0").unwrap();
    let web = ServiceSpec::tcp("web6", "fd00:7669:6b69::10", 80, &addrs(&backends));
    let dns = ServiceSpec::udp("dns6", "fd00:7669:6b69::53", 53, &[udp.addr]);
    let _agent = Agent::start(&w.cgroup, &w.pins, &render(&[web.clone(), dns.clone()]));

    let attempts =
        client::connect(Some(&w.cgroup), &w.netns, web.frontend(), ClientOptions { count: 4, ..Default::default() });
    assert_eq!(client::replies(&attempts), ["b0", "b1", "b0", "b1"]);
    assert!(attempts.iter().all(|a| a.peer.as_deref() == Some("[fd00:7669:6b69::10]:80")), "{attempts:?}");
    let udp_attempts = client::run(&w.cgroup, &w.netns, dns.frontend(), Mode::Sendto { count: 2 });
    assert!(
        udp_attempts
            .iter()
            .all(|a| a.reply.as_deref() == Some("u0") && a.peer.as_deref() == Some("[fd00:7669:6b69::53]:53")),
        "{udp_attempts:?}"
    );
}

#[test]
fn udp_sockets_connected_to_a_removed_backend_are_closed_and_reconnect_elsewhere() {
    let w = world();
    let udp = udp_backends(&w.netns, 2);
    let dns = ServiceSpec::udp("dns", "240.0.0.53", 53, &[udp[0].addr]);
    let agent = Agent::start(&w.cgroup, &w.pins, &render(std::slice::from_ref(&dns)));

    // One long-lived connected socket, a request every 20 ms for 3 s.
    let session = client::spawn(Some(&w.cgroup), &w.netns, dns.frontend(), Mode::UdpSession { duration_ms: 3000 });
    assert!(wait_for(Duration::from_secs(2), || (udp[0].served() >= 5).then_some(())).is_some(), "session started");
    // u0 leaves the service but keeps running: without Viking closing the socket, the
    // application would keep talking to it forever.
    agent.write_config(&render(&[ServiceSpec::udp("dns", "240.0.0.53", 53, &[udp[1].addr])]));
    assert!(
        agent.wait_log("closed 1 UDP socket(s) connected to removed backends", Duration::from_secs(2)),
        "{}",
        agent.log()
    );
    let attempts = client::collect(session);

    let replies: Vec<&str> = attempts.iter().filter_map(|a| a.reply.as_deref()).collect();
    let switch = replies.iter().position(|r| *r == "u1").expect("the session moved to u1");
    assert!(
        replies[..switch].iter().all(|r| *r == "u0") && replies[switch..].iter().all(|r| *r == "u1"),
        "{replies:?}"
    );
    let errors: Vec<_> = attempts.iter().filter(|a| a.errno.is_some()).collect();
    assert_eq!(errors.len(), 1, "exactly one failed request, when the socket was closed: {errors:?}");
    // udp_abort() disconnects the socket: a blocked recv fails with ECONNABORTED, the next
    // send with EDESTADDRREQ. Either way the application learns and reconnects.
    assert!(matches!(errors[0].errno, Some(103 | 89)), "ECONNABORTED or EDESTADDRREQ: {errors:?}");
    assert_eq!(dumped_backends(&agent.dump(), "240.0.0.53", 53), Some(vec![udp[1].addr.to_string()]));
}

#[test]
fn a_socket_that_asked_for_its_peer_keeps_the_vip_after_the_recent_table_moved_on() {
    let w = world();
    let tcp = tcp_backends(&w.netns, 1);
    let web = ServiceSpec::tcp("web", "240.0.0.10", 80, &addrs(&tcp));
    // A tiny recent-sockets table: 20 later connects overwrite every slot.
    let config = render(&[web]).replace("[agent]\n", "[limits]\nmax_recent_sockets = 4\n\n[agent]\n");
    let _agent = Agent::start(&w.cgroup, &w.pins, &config);

    let script = r#"
vip = ("240.0.0.10", 80)
asked = socket.create_connection(vip)
first = asked.getpeername()
silent = socket.create_connection(vip)
for _ in range(20):
    socket.create_connection(vip).close()
print(first[0], asked.getpeername()[0], silent.getpeername()[0])
"#;
    let peers: Vec<String> = w.python(script).split_whitespace().map(str::to_owned).collect();
    assert_eq!(peers[0], "240.0.0.10");
    assert_eq!(peers[1], "240.0.0.10", "promoted to socket storage when it first asked");
    // The documented limit: a socket that never asked, after max_recent_sockets later
    // connects, shows its backend.
    assert_eq!(peers[2], tcp[0].addr.ip().to_string());
}
