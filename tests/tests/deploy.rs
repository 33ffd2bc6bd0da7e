//! The deployment files in `deploy/` keep the settings the agent depends on: the Nomad job
//! (parsed with a real HCL parser) and the systemd unit. Needs no root and no kernel.

use std::path::{Path, PathBuf};

use hcl::{Block, Body, Expression, expr::TemplateExpr};

fn deploy_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy").join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(deploy_file(path)).unwrap_or_else(|err| panic!("deploy/{path}: {err}"))
}

/// The only block `name` directly in `body`.
fn block<'a>(body: &'a Body, name: &str) -> &'a Block {
    let mut found = blocks(body, name);
    let first = found.next().unwrap_or_else(|| panic!("no `{name}` block"));
    assert!(found.next().is_none(), "more than one `{name}` block");
    first
}

fn blocks<'a>(body: &'a Body, name: &str) -> impl Iterator<Item = &'a Block> {
    body.blocks().filter(move |b| b.identifier() == name)
}

fn attr<'a>(body: &'a Body, key: &str) -> &'a Expression {
    body.attributes().find(|a| a.key() == key).map(|a| a.expr()).unwrap_or_else(|| panic!("no `{key}` attribute"))
}

/// A string attribute (plain string, quoted template or heredoc) as text.
fn text<'a>(body: &'a Body, key: &str) -> &'a str {
    match attr(body, key) {
        Expression::String(s) => s,
        Expression::TemplateExpr(template) => match template.as_ref() {
            TemplateExpr::QuotedString(s) => s,
            TemplateExpr::Heredoc(heredoc) => &heredoc.template,
        },
        other => panic!("`{key}` is not a string: {other:?}"),
    }
}

fn boolean(body: &Body, key: &str) -> bool {
    match attr(body, key) {
        Expression::Bool(b) => *b,
        other => panic!("`{key}` is not a bool: {other:?}"),
    }
}

fn strings(body: &Body, key: &str) -> Vec<String> {
    match attr(body, key) {
        Expression::Array(items) => items
            .iter()
            .map(|item| match item {
                Expression::String(s) => s.clone(),
                other => panic!("`{key}` holds a non-string: {other:?}"),
            })
            .collect(),
        other => panic!("`{key}` is not a list: {other:?}"),
    }
}

#[test]
fn nomad_job_runs_one_privileged_host_agent_per_node() {
    let job_file: Body = hcl::parse(&read("nomad/viking.nomad.hcl")).expect("valid HCL");
    let job = block(&job_file, "job").body();
    assert_eq!(text(job, "type"), "system", "one agent per node");

    let update = block(job, "update").body();
    assert_eq!(attr(update, "max_parallel"), &Expression::from(1), "one node at a time");
    assert!(boolean(update, "auto_revert"));

    let group = block(job, "group").body();
    let task = block(group, "task").body();
    assert_eq!(text(task, "driver"), "docker");
    assert_eq!(text(task, "kill_signal"), "SIGTERM", "the agent leaves the dataplane pinned on SIGTERM");
    assert!(blocks(task, "lifecycle").next().is_none(), "no pre/poststop task (which could uninstall)");

    let config = block(task, "config").body();
    assert!(boolean(config, "privileged"));
    assert_eq!(text(config, "network_mode"), "host");
    assert_eq!(text(config, "pid_mode"), "host");
    let mounts: Vec<(String, String, Option<String>)> = blocks(config, "mount")
        .map(|m| {
            let body = m.body();
            assert_eq!(text(body, "type"), "bind");
            let propagation = blocks(body, "bind_options").next().map(|o| text(o.body(), "propagation").to_owned());
            (text(body, "source").to_owned(), text(body, "target").to_owned(), propagation)
        })
        .collect();
    assert!(
        mounts.contains(&("/sys/fs/bpf".into(), "/sys/fs/bpf".into(), Some("rshared".into()))),
        "the host's bpffs, so pins outlive the container: {mounts:?}"
    );
    assert!(
        mounts.iter().any(|(source, target, _)| source == "/sys/fs/cgroup" && target == "/sys/fs/cgroup"),
        "{mounts:?}"
    );

    let args = strings(config, "args");
    assert_eq!(args.first().map(String::as_str), Some("run"));
    assert!(!args.iter().any(|a| a == "uninstall"));
    let config_path = args.iter().skip_while(|a| *a != "--config").nth(1).expect("--config FILE");
    // The docker driver mounts the task's `local/` directory at `/local`.
    let destination = config_path.strip_prefix('/').expect("absolute path");
    let template = blocks(task, "template")
        .map(Block::body)
        .find(|t| text(t, "destination") == destination)
        .unwrap_or_else(|| panic!("no template writes {config_path}"));
    assert_eq!(text(template, "change_mode"), "noop", "the agent watches its config; no restart on change");
    let parsed = viking_agent::config::Config::parse(text(template, "data")).expect("the agent accepts the config");
    assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
    assert!(parsed.config.consul.is_some(), "a [consul] section");
    let env = block(task, "env").body();
    assert_eq!(text(env, "CONSUL_HTTP_ADDR"), "127.0.0.1:8500", "the node's Consul agent, over the host network");

    // Readiness gates the rolling update: the check is the agent's own /readyz, on the
    // port its config listens on.
    assert_eq!(text(update, "health_check"), "checks");
    let service = block(group, "service").body();
    let check = block(service, "check").body();
    assert_eq!((text(check, "type"), text(check, "path")), ("http", "/readyz"));
    let port = block(block(group, "network").body(), "port").body();
    let listen = parsed.config.metrics.listen.expect("metrics on");
    assert_eq!(attr(port, "static"), &Expression::from(i64::from(listen.port())), "the check's port is the agent's");
}

#[test]
fn systemd_unit_waits_for_ready_restarts_and_never_uninstalls() {
    let unit = read("systemd/viking-agent.service");
    let mut section = String::new();
    let mut keys: Vec<(String, String, String)> = Vec::new();
    for line in unit.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
            continue;
        }
        let (key, value) = line.split_once('=').unwrap_or_else(|| panic!("not key=value: {line}"));
        keys.push((section.clone(), key.trim().to_owned(), value.trim().to_owned()));
    }
    let get = |section: &str, key: &str| -> Vec<&str> {
        keys.iter().filter(|(s, k, _)| s == section && k == key).map(|(_, _, v)| v.as_str()).collect()
    };
    assert_eq!(get("Service", "ExecStart"), ["/usr/local/bin/viking-agent run --config /etc/viking/viking.toml"]);
    assert_eq!(
        get("Service", "ExecStartPost"),
        ["/usr/local/bin/viking-agent status --wait-ready 120"],
        "active only once ready, like the Nomad job's /readyz check"
    );
    assert_eq!(get("Service", "Restart"), ["always"]);
    assert_eq!(get("Service", "KillSignal"), ["SIGTERM"]);
    assert!(
        get("Service", "ExecStop").is_empty() && get("Service", "ExecStopPost").is_empty(),
        "stopping must not uninstall"
    );
    let nofile: u64 = get("Service", "LimitNOFILE")[0].parse().expect("a number");
    assert!(nofile >= 65536, "one connection per Consul service needs many descriptors");
    let bounding = get("Service", "CapabilityBoundingSet").join(" ");
    for cap in ["CAP_BPF", "CAP_NET_ADMIN", "CAP_SYS_ADMIN"] {
        assert!(bounding.split_whitespace().any(|c| c == cap), "{cap} missing from {bounding}");
    }
    for sandbox in ["ProtectSystem", "PrivateTmp", "PrivateMounts", "ProtectHome"] {
        assert!(get("Service", sandbox).is_empty(), "{sandbox} gives the service its own mount namespace");
    }
    assert_eq!(get("Install", "WantedBy"), ["multi-user.target"]);
}
