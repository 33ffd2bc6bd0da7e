//! The read commands' machine-readable output: `check --json` and `maps dump --service`.

use viking_tests::{
    Agent, addrs,
    backends::tcp_backends,
    config::{ServiceSpec, render},
    world,
};

#[test]
fn check_json_names_every_rejected_field_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("viking.toml");
    let text = "[[service]]\nname = \"web\"\nvip = \"240.0.0.10\"\nport = 80\nbackends = [\"127.0.0.1:0\", \"127.0.0.1:8080\"]\n\n\
                [[service]]\nname = \"db\"\nvip = \"10.0.0.1\"\nport = 5432\n";
    std::fs::write(&path, text).unwrap();
    let output = std::process::Command::new(viking_tests::binary("viking-agent"))
        .args(["check", "--json", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!output.status.success(), "errors make check fail");
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON on stdout");
    assert_eq!(json["services"][0]["name"], "web");
    assert_eq!(json["services"][0]["backends"], serde_json::json!(["127.0.0.1:8080"]));
    let errors = json["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2, "{json}");
    assert_eq!((&errors[0]["field"], &errors[0]["backend_only"]), (&"backends[0]".into(), &true.into()));
    assert_eq!(
        (&errors[1]["name"], &errors[1]["field"], &errors[1]["value"]),
        (&"db".into(), &"vip".into(), &"\"10.0.0.1\"".into())
    );
}

#[test]
fn maps_dump_shows_one_service_by_name() {
    let w = world();
    let b = tcp_backends(&w.netns, 1);
    let services = [
        ServiceSpec::tcp("web", "240.0.0.10", 80, &addrs(&b)),
        ServiceSpec::tcp("web", "240.0.0.10", 443, &addrs(&b)),
        ServiceSpec::tcp("db", "240.0.0.11", 5432, &addrs(&b)),
    ];
    let _agent = Agent::start(&w.cgroup, &w.pins, &render(&services));
    let dump = |name: &str| {
        std::process::Command::new(viking_tests::binary("viking-agent"))
            .args(["maps", "dump", "--json", "--service", name, "--pin-dir"])
            .arg(w.pins.path())
            .output()
            .unwrap()
    };
    let output = dump("web");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let ports: Vec<_> = json["services"].as_array().unwrap().iter().map(|s| s["port"].as_u64().unwrap()).collect();
    assert_eq!(ports, [80, 443], "both frontends of web, not db");
    let missing = dump("nope");
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no service named \"nope\""));
}
