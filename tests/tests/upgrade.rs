//! Upgrades across pinned layouts: pins of an older release are adopted under load, and
//! pins of a newer one are refused before anything is touched.
//!
//! The older release is real: `tests/fixtures/viking-ebpf-layout-1.o` is the kernel object
//! of the last release with layout 1 (how it was built: `tests/fixtures/README.md`). This
//! file installs it as that release's agent did (its maps pinned by name, each program
//! attached to the cgroup with a pinned link) and writes a service into its maps.

use std::{net::SocketAddr, path::Path, time::Duration};

use aya::{
    EbpfLoader,
    maps::{Array, HashMap, MapData},
    programs::{CgroupAttachMode, CgroupSock, CgroupSockAddr, links::FdLink},
};
use viking_common::{
    Algorithm, Backend, CgroupPolicy, Ip6, LAYOUT_VERSION, PolicyMode, ServiceKey, ServiceName, ServiceValue, names,
};
use viking_tests::{
    Agent, PinGuard, addrs,
    backends::tcp_backends,
    client::{self, ClientOptions, Mode},
    config::{ServiceSpec, render},
    world,
};

/// The kernel object of layout 1, 8-byte aligned for the loader.
static LAYOUT_1: &[u8] = aya::include_bytes_aligned!("../fixtures/viking-ebpf-layout-1.o");

/// The maps of layout 1.
const LAYOUT_1_MAPS: [&str; 17] = [
    names::SERVICES,
    names::BACKENDS,
    names::RR_CURSORS,
    names::SERVICE_STATS,
    names::SERVICE_NAMES,
    names::BACKEND_STATS,
    names::BACKEND_ACTIVE,
    names::SOCKETS,
    names::RECENT_SOCKETS,
    names::REV_NAT,
    names::AFFINITY,
    names::CGROUP_POLICY,
    names::ALLOWED,
    names::OVERLAYS,
    names::SETTINGS,
    names::CONTAINER_SCOPE,
    names::UNKNOWN_CONTAINERS,
];

/// The socket-address programs of layout 1 (besides `sock_release`).
const LAYOUT_1_SOCK_ADDR: [&str; 8] = [
    names::PROG_GETPEERNAME4,
    names::PROG_GETPEERNAME6,
    names::PROG_RECVMSG4,
    names::PROG_RECVMSG6,
    names::PROG_SENDMSG4,
    names::PROG_SENDMSG6,
    names::PROG_CONNECT4,
    names::PROG_CONNECT6,
];

/// A container cgroup id with a policy entry, to see policy survive the upgrade.
const CONTAINER: u64 = 4242;

/// Installs layout 1 under `pins` on `cgroup`, serving `web` at 240.0.0.10:80.
fn install_layout_1(pins: &Path, cgroup: &Path, backends: &[SocketAddr]) {
    std::fs::create_dir_all(pins.join("maps")).unwrap();
    std::fs::create_dir_all(pins.join("links")).unwrap();
    let mut loader = EbpfLoader::new();
    for name in LAYOUT_1_MAPS {
        loader.map_pin_path(name, pins.join("maps").join(name));
    }
    let mut ebpf = loader.load(LAYOUT_1).expect("layout 1 loads");
    let cgroup_dir = std::fs::File::open(cgroup).unwrap();
    let pin = |link: FdLink, name: &str| link.pin(pins.join("links").join(name)).expect("pin link");
    let release: &mut CgroupSock = ebpf.program_mut(names::PROG_SOCK_RELEASE).unwrap().try_into().unwrap();
    release.load().unwrap();
    let id = release.attach(&cgroup_dir, CgroupAttachMode::Single).unwrap();
    pin(release.take_link(id).unwrap().try_into().unwrap(), names::PROG_SOCK_RELEASE);
    for name in LAYOUT_1_SOCK_ADDR {
        let program: &mut CgroupSockAddr = ebpf.program_mut(name).unwrap().try_into().unwrap();
        program.load().unwrap();
        let id = program.attach(&cgroup_dir, CgroupAttachMode::Single).unwrap();
        pin(program.take_link(id).unwrap().try_into().unwrap(), name);
    }

    // What that release's agent wrote for one service: backends, slots, then the entry.
    let mut backend_map: Array<&mut MapData, Backend> = ebpf.map_mut(names::BACKENDS).unwrap().try_into().unwrap();
    for (id, addr) in backends.iter().enumerate() {
        let backend = Backend { address: Ip6::from_ip(addr.ip()), port_be: addr.port().to_be(), _pad0: 0 };
        backend_map.set(id as u32, backend, 0).unwrap();
    }
    let mut services: HashMap<&mut MapData, ServiceKey, ServiceValue> =
        ebpf.map_mut(names::SERVICES).unwrap().try_into().unwrap();
    let key =
        ServiceKey::new(Ip6::from_ip("240.0.0.10".parse().unwrap()), 80u16.to_be(), viking_common::IPPROTO_TCP, 0);
    let ids: Vec<u32> = (0..backends.len() as u32).collect();
    for id in &ids {
        services.insert(key.with_slot(*id as u16 + 1), ServiceValue::slot(0, *id), 0).unwrap();
    }
    services.insert(key, ServiceValue::entry(0, &ids, Algorithm::RoundRobin, 0).unwrap(), 0).unwrap();
    let mut service_names: HashMap<&mut MapData, u32, ServiceName> =
        ebpf.map_mut(names::SERVICE_NAMES).unwrap().try_into().unwrap();
    service_names.insert(0, ServiceName::new("web"), 0).unwrap();
    let mut policy: HashMap<&mut MapData, u64, CgroupPolicy> =
        ebpf.map_mut(names::CGROUP_POLICY).unwrap().try_into().unwrap();
    policy.insert(CONTAINER, CgroupPolicy { mode: PolicyMode::Enforce as u8, _pad: [0; 7] }, 0).unwrap();
    // The programs stay attached and the maps alive through their pins.
}

#[test]
fn layout_1_pins_are_upgraded_under_load_with_no_failed_connect() {
    let w = world();
    let b = tcp_backends(&w.netns, 2);
    install_layout_1(w.pins.path(), w.cgroup.path(), &addrs(&b));
    let web = ServiceSpec::tcp("web", "240.0.0.10", 80, &addrs(&b));
    let before =
        client::connect(Some(&w.cgroup), &w.netns, web.frontend(), ClientOptions { count: 20, ..Default::default() });
    assert_eq!(client::replies(&before).len(), 20, "layout 1 serves: {before:?}");

    // Connects keep coming while the new agent takes over.
    let options = ClientOptions { count: 400, interval_ms: 5, ..Default::default() };
    let load = client::spawn(Some(&w.cgroup), &w.netns, web.frontend(), Mode::Connect(options));
    std::thread::sleep(Duration::from_millis(300));
    // Docker is configured but down, as during a host's maintenance: the adopted container
    // policy must stay until Docker lists its containers.
    let config = render(std::slice::from_ref(&web)) + "[docker]\nhost = \"unix:///nonexistent/docker.sock\"\n";
    let agent = Agent::start(&w.cgroup, &w.pins, &config);
    let during = client::collect(load);
    let failed: Vec<_> = during.iter().filter(|a| a.reply.is_none()).collect();
    assert!(failed.is_empty(), "{} of {} connects failed: {:?}", failed.len(), during.len(), failed.first());

    let log = agent.log();
    assert!(log.contains(&format!("upgraded the pinned layout from=1 to={LAYOUT_VERSION}")), "{log}");
    assert!(log.contains("replaced the program in the pinned link"), "{log}");
    assert!(!log.contains("added web"), "the service is adopted, not rewritten:\n{log}");
    let dump = agent.dump();
    assert_eq!(dump["layout"], LAYOUT_VERSION, "{dump}");
    let service = &dump["services"][0];
    assert_eq!(service["service_id"], 0, "ids survive: {dump}");
    assert_eq!(service["stats"]["redirected"], 420, "counters survive the upgrade: {dump}");
    let connects: u64 =
        service["backend_stats"].as_array().unwrap().iter().map(|b| b["connects"].as_u64().unwrap()).sum();
    assert_eq!(connects, 420, "{dump}");
    assert_eq!(service["outlier"]["consecutive_failures"], 3, "the new map is filled: {dump}");
    let policy = dump["policy"].as_array().unwrap();
    assert!(policy.iter().any(|p| p["cgroup_id"] == CONTAINER && p["mode"] == "enforce"), "policy survives: {dump}");
    assert!(w.pins.path().join("links").join(names::PROG_SOCK_OPS).exists(), "the new program is attached");
}

#[test]
fn pins_of_a_newer_layout_this_agent_can_use_are_adopted_and_keep_their_record() {
    let w = world();
    let b = tcp_backends(&w.netns, 1);
    let web = ServiceSpec::tcp("web", "240.0.0.10", 80, &addrs(&b));
    let mut agent = Agent::start(&w.cgroup, &w.pins, &render(std::slice::from_ref(&web)));
    agent.stop();
    // As a newer release that only added maps would leave them: readable by this layout.
    mark_layout(&w.pins, LAYOUT_VERSION + 1, LAYOUT_VERSION);
    agent.restart();
    assert!(agent.log().contains("adopted pins of a newer layout"), "{}", agent.log());
    assert_eq!(agent.dump()["layout"], LAYOUT_VERSION + 1, "the newer record stays");
    let after =
        client::connect(Some(&w.cgroup), &w.netns, web.frontend(), ClientOptions { count: 4, ..Default::default() });
    assert_eq!(client::replies(&after).len(), 4);
}

#[test]
fn pins_of_a_newer_layout_are_refused_and_left_as_they_are() {
    let w = world();
    let b = tcp_backends(&w.netns, 1);
    let web = ServiceSpec::tcp("web", "240.0.0.10", 80, &addrs(&b));
    let mut agent = Agent::start(&w.cgroup, &w.pins, &render(std::slice::from_ref(&web)));
    agent.stop();
    mark_layout(&w.pins, LAYOUT_VERSION + 1, LAYOUT_VERSION + 1);

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("viking.toml");
    std::fs::write(&config, render(std::slice::from_ref(&web))).unwrap();
    let binary = viking_tests::binary("viking-agent");
    let output = viking_sandbox::AgentCli { binary: &binary, pin_dir: w.pins.path() }
        .run(&config, w.cgroup.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    let expected = format!(
        "have layout {0}, which needs an agent of layout {0} or newer; this agent's layout is {LAYOUT_VERSION}",
        LAYOUT_VERSION + 1
    );
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(stderr.contains("nothing was changed"), "{stderr}");

    let after =
        client::connect(Some(&w.cgroup), &w.netns, web.frontend(), ClientOptions { count: 4, ..Default::default() });
    assert_eq!(client::replies(&after).len(), 4, "the installed dataplane still serves: {after:?}");
}

/// Writes a layout record into the pins, as a newer agent would have.
fn mark_layout(pins: &PinGuard, version: u32, readable_by: u32) {
    let data = MapData::from_pin(pins.path().join("maps").join(names::LAYOUT)).unwrap();
    let mut layout: Array<MapData, u32> = aya::maps::Map::Array(data).try_into().unwrap();
    layout.set(0, version, 0).unwrap();
    layout.set(1, readable_by, 0).unwrap();
}
