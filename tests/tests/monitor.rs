//! `viking-agent monitor`: a live stream of the kernel's connect decisions.

use std::{
    io::{BufRead as _, BufReader},
    process::{Command, Stdio},
    time::Duration,
};

use viking_tests::{
    Agent, addrs,
    backends::tcp_backends,
    client::{self, ClientOptions},
    config::{ServiceSpec, render},
    world,
};

#[test]
fn monitor_shows_a_redirected_and_a_refused_connect_then_turns_reporting_off() {
    let w = world();
    let b = tcp_backends(&w.netns, 1);
    let web = ServiceSpec::tcp("web", "240.0.0.10", 80, &addrs(&b));
    let empty = ServiceSpec::tcp("empty", "240.0.0.11", 80, &[]);
    let agent = Agent::start(&w.cgroup, &w.pins, &render(&[web.clone(), empty.clone()]));

    let mut monitor = Command::new(viking_tests::binary("viking-agent"))
        .args(["monitor", "--json", "--count", "2", "--pin-dir"])
        .arg(w.pins.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // It says when it watches; connects before that are not shown.
    let mut stderr = BufReader::new(monitor.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(line.contains("watching connects"), "{line}");

    let ok = client::connect(Some(&w.cgroup), &w.netns, web.frontend(), ClientOptions::default());
    assert_eq!(client::replies(&ok), ["b0"]);
    let refused = client::connect(Some(&w.cgroup), &w.netns, empty.frontend(), ClientOptions::default());
    assert_eq!(refused[0].errno, Some(111));

    let output = viking_sandbox::process::output_bounded(monitor, Duration::from_secs(10));
    assert!(output.status.success(), "monitor ended on its own after 2 events");
    let events: Vec<serde_json::Value> =
        String::from_utf8_lossy(&output.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(
        (&events[0]["service"], &events[0]["verdict"], &events[0]["backend"]),
        (&"web".into(), &"redirected".into(), &b[0].addr.to_string().into())
    );
    assert_eq!((&events[1]["service"], &events[1]["verdict"]), (&"empty".into(), &"refused (no backend)".into()));
    let cgroup_id = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(w.cgroup.path()).unwrap());
    assert_eq!(events[0]["cgroup_id"], cgroup_id, "the client's cgroup");

    // Reporting is off again once the monitor is gone.
    let pin = w.pins.path().join("maps").join(viking_common::names::MONITOR);
    let map = aya::maps::Map::Array(aya::maps::MapData::from_pin(pin).unwrap());
    let settings: aya::maps::Array<aya::maps::MapData, viking_common::MonitorSettings> = map.try_into().unwrap();
    assert_eq!(settings.get(&0, 0).unwrap().sample_every, 0);
    drop(agent);
}
