//! Harness for Viking's integration tests. Every test builds its own world from
//! [`viking_sandbox`] (a fresh cgroup, an anonymous netns, backends inside it) and adds:
//!
//! - [`Agent`]: the real `viking-agent` binary with its own pin directory ([`pins`]), on
//!   the sandbox's [`viking_sandbox::AgentProcess`];
//! - [`client`]: the `viking-testkit` client, run as a process inside the cgroup and netns.
//!
//! All of it is torn down on drop, also when a test panics.

pub mod agent;
pub mod client;
pub mod config;
pub mod consul;
pub mod docker;

pub use agent::{Agent, pins};
pub use viking_sandbox::{Backend, Cgroup, Netns, PinGuard, backends, wait_for};

/// A test's own world: its pin directory, cgroup and network namespace. Dropped in that
/// order: the links go before the cgroup they are attached to.
#[derive(Debug)]
pub struct World {
    /// Where the test's agent pins maps and links.
    pub pins: PinGuard,
    /// The cgroup the programs attach to and clients run in.
    pub cgroup: Cgroup,
    /// The namespace clients and backends share.
    pub netns: Netns,
}

/// A fresh world (as root).
pub fn world() -> World {
    require_root();
    World { pins: pins(), cgroup: Cgroup::unique().expect("cgroup"), netns: Netns::anonymous().expect("netns") }
}

impl World {
    /// Runs a Python 3 script inside the world's cgroup and namespace, at most 60 s, and
    /// returns its standard output; panics with its errors when it fails.
    pub fn python(&self, script: &str) -> String {
        // Every socket operation of the script gives up after 2 s.
        let script = format!("import socket\nsocket.setdefaulttimeout(2)\n{script}");
        let mut command = std::process::Command::new("timeout");
        command.args(["--kill-after=5", "60", "python3", "-c", &script]);
        viking_sandbox::process::place(&mut command, &self.cgroup, &self.netns).expect("place python3");
        let output = command.output().expect("python3");
        assert!(output.status.success(), "python3 failed: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

/// The addresses of backends, for a service spec.
pub fn addrs(backends: &[Backend]) -> Vec<std::net::SocketAddr> {
    backends.iter().map(|b| b.addr).collect()
}

/// Panics with a clear message unless the tests run as root (they load BPF programs and
/// create cgroups and namespaces).
pub fn require_root() {
    assert!(
        rustix::process::geteuid().is_root(),
        "Viking's integration tests need root: run `cargo xtask test` as root"
    );
}

/// Path of a binary of this workspace built with the tests' profile (`target/<profile>/`),
/// or `$VIKING_AGENT_BIN` / `$VIKING_TESTKIT_BIN` when set. `cargo xtask test` builds them.
pub fn binary(name: &str) -> std::path::PathBuf {
    let var = format!("{}_BIN", name.to_uppercase().replace('-', "_"));
    if let Some(path) = std::env::var_os(&var) {
        return path.into();
    }
    let exe = std::env::current_exe().expect("current exe");
    // Test executables live in target/<profile>/deps/.
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).expect("target/<profile>");
    let path = profile_dir.join(name);
    assert!(
        path.exists(),
        "{} not found: run the tests with `cargo xtask test` (it builds the agent), or set ${var}",
        path.display()
    );
    path
}
