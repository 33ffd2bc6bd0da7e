//! The dataplane outlives the agent: SIGKILL leaves connects working, a new agent adopts
//! the pins without a gap, `uninstall` removes everything.

use std::time::Duration;

use viking_tests::{
    Agent, Cgroup, Netns,
    backends::tcp_backends,
    client::{self, ClientOptions},
    config::{ServiceSpec, render},
    pins, require_root,
};

const ENETUNREACH: i32 = 101;

#[test]
fn connects_keep_working_while_the_agent_is_killed_and_restarted() {
    require_root();
    let (cgroup, netns, pins) = (Cgroup::unique().unwrap(), Netns::anonymous().unwrap(), pins());
    let b = tcp_backends(&netns, 2);
    let web = ServiceSpec::tcp("web", "240.0.0.10", 80, &[b[0].addr, b[1].addr]);
    let mut agent = Agent::start(&cgroup, &pins, &render(std::slice::from_ref(&web)));
    let ids_before = agent.dump()["services"][0]["service_id"].clone();

    // A client connects every 10 ms (300 attempts, bounded to a few seconds) while the
    // agent is killed, stays down, and a new one starts and adopts the pins.
    let traffic = client::spawn(
        Some(&cgroup),
        &netns,
        web.frontend(),
        client::Mode::Connect(ClientOptions { count: 300, interval_ms: 10, ..Default::default() }),
    );
    std::thread::sleep(Duration::from_millis(300));
    agent.kill();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(agent.dump()["services"][0]["backends"].as_array().map(Vec::len), Some(2), "maps survive SIGKILL");
    agent.restart();
    let attempts = client::collect(traffic);

    let failures: Vec<_> = attempts.iter().filter(|a| a.reply.is_none()).collect();
    assert!(failures.is_empty(), "{} of {} connects failed: {:?}", failures.len(), attempts.len(), failures.first());
    let log = agent.log();
    assert!(log.contains("replaced the program in the pinned link"), "{log}");
    assert!(log.contains("dataplane adopted from pins"), "{log}");
    assert!(!log.contains("added web"), "the adopted service is not rewritten:\n{log}");
    assert_eq!(agent.dump()["services"][0]["service_id"], ids_before);
}

#[test]
fn uninstall_detaches_and_removes_every_pin() {
    require_root();
    let (cgroup, netns, pins) = (Cgroup::unique().unwrap(), Netns::anonymous().unwrap(), pins());
    let b = tcp_backends(&netns, 1);
    let web = ServiceSpec::tcp("web", "240.0.0.10", 80, &[b[0].addr]);
    let mut agent = Agent::start(&cgroup, &pins, &render(std::slice::from_ref(&web)));
    agent.stop();
    let still = client::connect(Some(&cgroup), &netns, web.frontend(), ClientOptions::default());
    assert_eq!(client::replies(&still), ["b0"], "a stopped agent leaves the dataplane in place");

    let uninstall = |expect: &str| {
        let output = std::process::Command::new(viking_tests::binary("viking-agent"))
            .args(["uninstall", "--pin-dir"])
            .arg(pins.path())
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(stdout.contains(expect), "{stdout}");
    };
    uninstall(&format!("detached {} program(s)", viking_agent::dataplane::HOOKS.len()));
    assert!(!pins.path().exists(), "pin directory removed");
    let after = client::connect(Some(&cgroup), &netns, web.frontend(), ClientOptions::default());
    assert_eq!(after[0].errno, Some(ENETUNREACH), "no redirect after uninstall: {after:?}");
    uninstall("nothing installed");
}
