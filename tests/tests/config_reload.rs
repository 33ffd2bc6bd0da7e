//! Editing the config file changes what the kernel serves within a second, as a diff; a
//! broken file or service changes nothing else.

use std::{net::SocketAddr, time::Duration};

use viking_tests::{
    Agent, Cgroup, Netns,
    agent::dumped_backends,
    backends::tcp_backends,
    client::{self, ClientOptions},
    config::{ServiceSpec, render},
    pins, require_root, wait_for,
};

const ENETUNREACH: i32 = 101;
/// The issue's promise: an edit is applied within 1 s.
const APPLY_WITHIN: Duration = Duration::from_secs(1);

fn one(cgroup: &Cgroup, netns: &Netns, to: SocketAddr) -> client::Attempt {
    client::connect(Some(cgroup), netns, to, ClientOptions::default()).remove(0)
}

/// Waits until the dump shows `backends` for `vip:port` (`None` = service absent).
fn wait_dump(agent: &Agent, vip: &str, port: u16, backends: Option<Vec<SocketAddr>>) -> bool {
    let want = backends.map(|b| b.iter().map(ToString::to_string).collect::<Vec<_>>());
    wait_for(APPLY_WITHIN, || (dumped_backends(&agent.dump(), vip, port) == want).then_some(())).is_some()
}

#[test]
fn edits_add_and_remove_services_and_backends() {
    require_root();
    let (cgroup, netns, pins) = (Cgroup::unique().unwrap(), Netns::anonymous().unwrap(), pins());
    let b = tcp_backends(&netns, 3);
    let web = ServiceSpec::tcp("web", "240.0.0.10", 80, &[b[0].addr, b[1].addr]);
    let agent = Agent::start(&cgroup, &pins, &render(std::slice::from_ref(&web)));

    // Add a service.
    let api = ServiceSpec::tcp("api", "240.0.0.20", 8080, &[b[2].addr]);
    agent.write_config(&render(&[web.clone(), api.clone()]));
    assert!(wait_dump(&agent, "240.0.0.20", 8080, Some(vec![b[2].addr])), "api not applied:\n{}", agent.log());
    assert_eq!(one(&cgroup, &netns, api.frontend()).reply.as_deref(), Some("b2"));

    // Replace a backend, keeping their number: the new one takes the old one's turns.
    let web_swapped = ServiceSpec::tcp("web", "240.0.0.10", 80, &[b[0].addr, b[2].addr]);
    agent.write_config(&render(&[web_swapped, api.clone()]));
    let swapped = Some(vec![b[0].addr, b[2].addr]);
    assert!(wait_dump(&agent, "240.0.0.10", 80, swapped), "backend not replaced:\n{}", agent.log());
    let served_before = b[1].served();
    let attempts =
        client::connect(Some(&cgroup), &netns, web.frontend(), ClientOptions { count: 4, ..Default::default() });
    let mut replies = client::replies(&attempts);
    replies.sort();
    assert_eq!(replies, vec!["b0", "b0", "b2", "b2"]);
    assert_eq!(b[1].served(), served_before, "the replaced backend got new connects");

    // Remove a backend: it receives no new connects.
    let web_one = ServiceSpec::tcp("web", "240.0.0.10", 80, &[b[2].addr]);
    agent.write_config(&render(&[web_one.clone(), api.clone()]));
    assert!(wait_dump(&agent, "240.0.0.10", 80, Some(vec![b[2].addr])), "backend not removed:\n{}", agent.log());
    let served_before = b[0].served();
    let attempts =
        client::connect(Some(&cgroup), &netns, web.frontend(), ClientOptions { count: 6, ..Default::default() });
    assert_eq!(client::replies(&attempts), vec!["b2"; 6]);
    assert_eq!(b[0].served(), served_before, "the removed backend got new connects");

    // Remove a service: its VIP is no longer redirected.
    agent.write_config(&render(&[web_one]));
    assert!(wait_dump(&agent, "240.0.0.20", 8080, None), "api not removed:\n{}", agent.log());
    assert_eq!(one(&cgroup, &netns, api.frontend()).errno, Some(ENETUNREACH));
    assert!(agent.log().contains("removed api 240.0.0.20:8080/tcp"), "{}", agent.log());
}

#[test]
fn a_broken_file_keeps_the_last_good_state_and_reports_the_error() {
    require_root();
    let (cgroup, netns, pins) = (Cgroup::unique().unwrap(), Netns::anonymous().unwrap(), pins());
    let b = tcp_backends(&netns, 2);
    let web = ServiceSpec::tcp("web", "240.0.0.10", 80, &[b[0].addr]);
    let agent = Agent::start(&cgroup, &pins, &render(std::slice::from_ref(&web)));

    agent.write_config("[[service]]\nname = \"web\"\nvip = \"240.0.0.10\"\nport = \n");
    assert!(agent.wait_log("keeping the last good state", Duration::from_secs(2)), "{}", agent.log());
    assert!(agent.log().contains("invalid config"), "{}", agent.log());
    assert_eq!(one(&cgroup, &netns, web.frontend()).reply.as_deref(), Some("b0"));

    // Fixing the file applies it.
    let fixed = ServiceSpec::tcp("web", "240.0.0.10", 80, &[b[1].addr]);
    agent.write_config(&render(&[fixed]));
    assert!(wait_dump(&agent, "240.0.0.10", 80, Some(vec![b[1].addr])), "{}", agent.log());
    assert_eq!(one(&cgroup, &netns, web.frontend()).reply.as_deref(), Some("b1"));
}

#[test]
fn an_invalid_service_is_reported_and_the_others_are_applied() {
    require_root();
    let (cgroup, netns, pins) = (Cgroup::unique().unwrap(), Netns::anonymous().unwrap(), pins());
    let b = tcp_backends(&netns, 2);
    let web = ServiceSpec::tcp("web", "240.0.0.10", 80, &[b[0].addr]);
    let agent = Agent::start(&cgroup, &pins, &render(std::slice::from_ref(&web)));

    // web moves to a VIP outside the range (invalid: its last good version stays), and a
    // new valid service arrives in the same edit.
    let mut bad_web = web.clone();
    bad_web.vip = "10.1.2.3".into();
    let api = ServiceSpec::tcp("api", "240.0.0.20", 8080, &[b[1].addr]);
    agent.write_config(&render(&[bad_web, api.clone()]));
    assert!(wait_dump(&agent, "240.0.0.20", 8080, Some(vec![b[1].addr])), "{}", agent.log());
    let log = agent.log();
    assert!(log.contains(r#"service[0] "web": `vip` = "10.1.2.3": outside the VIP ranges"#), "{log}");
    assert_eq!(one(&cgroup, &netns, web.frontend()).reply.as_deref(), Some("b0"), "last good web still served");
    assert_eq!(one(&cgroup, &netns, api.frontend()).reply.as_deref(), Some("b1"));
}

#[test]
fn a_bad_backend_is_skipped_and_the_service_keeps_the_others() {
    require_root();
    let (cgroup, netns, pins) = (Cgroup::unique().unwrap(), Netns::anonymous().unwrap(), pins());
    let b = tcp_backends(&netns, 1);
    let text = format!(
        "[[service]]\nname = \"web\"\nvip = \"240.0.0.10\"\nport = 80\nbackends = [\"{}\", \"240.0.0.99:80\", \"127.0.0.1:0\"]\n",
        b[0].addr
    );
    let agent = Agent::start(&cgroup, &pins, &text);
    let log = agent.log();
    assert!(log.contains(r#"`backends[1]` = "240.0.0.99:80": inside the VIP ranges"#), "{log}");
    assert!(log.contains(r#"`backends[2]` = "127.0.0.1:0": port 0"#), "{log}");
    assert_eq!(dumped_backends(&agent.dump(), "240.0.0.10", 80), Some(vec![b[0].addr.to_string()]));
}
