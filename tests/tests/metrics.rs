//! The metrics and health endpoint: `/metrics` parsed with a Prometheus text-format parser
//! after real connects, `/readyz` flipping to ready, `/healthz`.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use viking_tests::{
    Agent, addrs,
    backends::tcp_backends,
    client::{self, ClientOptions},
    config::{ServiceSpec, render},
    consul::TestConsul,
    world,
};

/// `GET path` over HTTP/1.1: the status code and the body.
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect to the endpoint");
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("a status code");
    (status, body.to_owned())
}

/// The value of the sample `name` whose labels include `labels`.
fn value(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let sample =
        scrape.samples.iter().find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))?;
    match sample.value {
        prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Untyped(v) => Some(v),
        _ => None,
    }
}

fn scrape(addr: SocketAddr) -> prometheus_parse::Scrape {
    let (status, body) = get(addr, "/metrics");
    assert_eq!(status, 200, "{body}");
    prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).expect("valid Prometheus text")
}

#[test]
fn counters_equal_what_the_clients_did() {
    let w = world();
    let b = tcp_backends(&w.netns, 2);
    let web = ServiceSpec::tcp("web", "240.0.0.10", 80, &addrs(&b));
    let empty = ServiceSpec::tcp("empty", "240.0.0.11", 80, &[]);
    let agent = Agent::start(&w.cgroup, &w.pins, &render(&[web.clone(), empty.clone()]));
    let endpoint = agent.metrics_addr();

    let ok =
        client::connect(Some(&w.cgroup), &w.netns, web.frontend(), ClientOptions { count: 10, ..Default::default() });
    assert_eq!(client::replies(&ok).len(), 10);
    let refused =
        client::connect(Some(&w.cgroup), &w.netns, empty.frontend(), ClientOptions { count: 3, ..Default::default() });
    assert!(refused.iter().all(|a| a.errno == Some(111)), "{refused:?}");

    let scrape = scrape(endpoint);
    let web_labels = [("service", "web"), ("frontend", "240.0.0.10:80/tcp")];
    assert_eq!(value(&scrape, "viking_service_redirected_total", &web_labels), Some(10.0));
    let no_backend = [("service", "empty"), ("reason", "no_backend")];
    assert_eq!(value(&scrape, "viking_service_refused_total", &no_backend), Some(3.0));
    assert_eq!(value(&scrape, "viking_service_refused_total", &[("service", "web"), ("reason", "policy")]), Some(0.0));
    for backend in &b {
        let labels = [("backend", &*backend.addr.to_string())];
        assert_eq!(value(&scrape, "viking_backend_connects_total", &labels), Some(5.0), "round robin: 5 each");
        assert_eq!(value(&scrape, "viking_backend_ejected", &labels), Some(0.0));
    }
    assert_eq!(value(&scrape, "viking_services", &[]), Some(2.0));
    assert_eq!(value(&scrape, "viking_map_entries", &[("map", "services")]), Some(4.0), "2 entries + 2 slots");
    assert_eq!(value(&scrape, "viking_map_entries", &[("map", "backends")]), Some(2.0));
    assert_eq!(value(&scrape, "viking_map_limit", &[("map", "backends")]), Some(65536.0));
    assert_eq!(value(&scrape, "viking_ready", &[]), Some(1.0));
    assert!(value(&scrape, "viking_reconcile_writes_total", &[]) >= Some(5.0), "2 backends, 3 slots, 2 entries");
    assert!(!scrape.samples.iter().any(|s| s.metric.starts_with("viking_consul_")), "no Consul source, no series");
    assert!(value(&scrape, "viking_build_info", &[("version", env!("CARGO_PKG_VERSION"))]).is_some());
    assert_eq!(get(endpoint, "/healthz").0, 200);
    assert_eq!(get(endpoint, "/nothing").0, 404);
}

#[test]
fn per_backend_series_can_be_turned_off_and_services_are_bounded() {
    let w = world();
    let b = tcp_backends(&w.netns, 1);
    let services: Vec<ServiceSpec> =
        (0..5).map(|i| ServiceSpec::tcp(&format!("s{i}"), &format!("240.0.0.{}", 10 + i), 80, &addrs(&b))).collect();
    let config = render(&services).replace(
        "[metrics]\nlisten = \"127.0.0.1:0\"\n",
        "[metrics]\nlisten = \"127.0.0.1:0\"\nper_backend = false\nmax_services = 2\n",
    );
    let agent = Agent::start(&w.cgroup, &w.pins, &config);
    let scrape = scrape(agent.metrics_addr());
    let services: Vec<_> = scrape.samples.iter().filter(|s| s.metric == "viking_service_redirected_total").collect();
    assert_eq!(services.len(), 2, "max_services = 2");
    assert_eq!(value(&scrape, "viking_metrics_services_omitted", &[]), Some(3.0));
    assert!(!scrape.samples.iter().any(|s| s.metric.starts_with("viking_backend_")), "per_backend = false");
}

#[test]
fn readyz_turns_ready_once_consul_has_answered() {
    let consul = TestConsul::start();
    consul.block_on(consul.server.stop());
    let w = world();
    let b = tcp_backends(&w.netns, 1);
    let local = ServiceSpec::tcp("local", "240.0.0.10", 80, &addrs(&b));
    let agent = Agent::start(&w.cgroup, &w.pins, &(render(&[local]) + &consul.config_section("")));
    let endpoint = agent.metrics_addr();
    let (status, body) = get(endpoint, "/readyz");
    assert_eq!((status, body.trim()), (503, "not ready: waiting for a source's first answer"));
    assert_eq!(get(endpoint, "/healthz").0, 200, "alive while not ready");

    let down = scrape(endpoint);
    assert_eq!(value(&down, "viking_consul_synced", &[]), Some(0.0));

    // What systemd's ExecStartPost runs: it fails while the agent is not ready...
    let wait_ready = |seconds: &str| {
        std::process::Command::new(viking_tests::binary("viking-agent"))
            .args(["status", "--wait-ready", seconds, "--endpoint", &endpoint.to_string()])
            .output()
            .unwrap()
    };
    let not_yet = wait_ready("1");
    assert!(!not_yet.status.success());
    let stderr = String::from_utf8_lossy(&not_yet.stderr);
    assert!(stderr.contains("not ready within 1s: running, not ready"), "{stderr}");

    // ...and returns once it is.
    consul.block_on(consul.server.start_again()).unwrap();
    let ready = wait_ready("20");
    assert!(ready.status.success(), "{}\n{}", String::from_utf8_lossy(&ready.stderr), agent.log());
    assert_eq!(get(endpoint, "/readyz").0, 200);
    let up = scrape(endpoint);
    assert_eq!(value(&up, "viking_consul_reachable", &[]), Some(1.0), "{}", agent.log());
    assert_eq!(value(&up, "viking_consul_synced", &[]), Some(1.0));
    assert!(value(&up, "viking_consul_last_answer_timestamp_seconds", &[]) > Some(1.0e9));
    assert!(value(&up, "viking_update_to_kernel_seconds_count", &[]) >= Some(1.0), "applies are timed");

    // Every series the Grafana dashboard plots is one the agent exports.
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string("../deploy/grafana/viking.json").unwrap()).unwrap();
    let exported: std::collections::BTreeSet<&str> = up.samples.iter().map(|s| s.metric.as_str()).collect();
    let mut plotted = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for name in metric_names(expr) {
                let base = name.strip_suffix("_bucket").unwrap_or(name);
                assert!(
                    exported.contains(name) || exported.contains(base),
                    "{name} (panel {}) is not exported",
                    panel["title"]
                );
                plotted += 1;
            }
        }
    }
    assert!(plotted >= 9, "the dashboard plots the agent's series");
}

/// The `viking_*` metric names in a PromQL expression.
fn metric_names(expr: &str) -> Vec<&str> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(start) = rest.find("viking_") {
        let tail = &rest[start..];
        let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
        names.push(&tail[..end]);
        rest = &tail[end..];
    }
    names
}

#[test]
fn status_reports_the_running_agent_and_then_what_the_pins_tell() {
    let w = world();
    let b = tcp_backends(&w.netns, 1);
    let web = ServiceSpec::tcp("web", "240.0.0.10", 80, &addrs(&b));
    let mut agent = Agent::start(&w.cgroup, &w.pins, &render(std::slice::from_ref(&web)));
    let endpoint = agent.metrics_addr();
    let status = |endpoint: SocketAddr| {
        let output = std::process::Command::new(viking_tests::binary("viking-agent"))
            .args(["status", "--json", "--endpoint", &endpoint.to_string(), "--pin-dir"])
            .arg(w.pins.path())
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        serde_json::from_slice::<serde_json::Value>(&output.stdout).expect("JSON")
    };

    let running = status(endpoint);
    assert_eq!(running["agent_version"], env!("CARGO_PKG_VERSION"), "{running}");
    assert_eq!(
        (&running["ready"], &running["services"], &running["layout"]),
        (&true.into(), &1.into(), &viking_common::LAYOUT_VERSION.into())
    );
    assert_eq!(running["cgroup"], w.cgroup.path().display().to_string());
    assert_eq!(running["sources"], serde_json::json!([{ "name": "file", "reported": true }]));
    let programs = running["programs"].as_array().unwrap();
    assert_eq!(programs.len(), viking_agent::dataplane::HOOKS.len());
    assert!(programs.iter().all(|p| p["id"].is_u64()), "every program attached: {running}");

    agent.stop();
    let stopped = status(endpoint);
    assert!(stopped["agent_version"].is_null(), "no agent answers: {stopped}");
    assert_eq!((&stopped["services"], &stopped["layout"]), (&1.into(), &viking_common::LAYOUT_VERSION.into()));
    assert_eq!(stopped["programs"], running["programs"], "the programs stay attached");
}
