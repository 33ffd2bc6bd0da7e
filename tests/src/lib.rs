//! Harness for Viking's integration tests. Every test builds its own world from
//! [`viking_sandbox`] (a fresh cgroup, an anonymous netns, backends inside it) and adds:
//!
//! - [`Agent`]: the real `viking-agent` binary with its own pin directory ([`PinGuard`]);
//! - [`client`]: the `viking-testkit` client, run as a process inside the cgroup and netns.
//!
//! All of it is torn down on drop, also when a test panics.

pub mod agent;
pub mod client;
pub mod config;
pub mod consul;
pub mod docker;

pub use agent::{Agent, PinGuard};
pub use viking_sandbox::{Backend, Cgroup, Netns, backends, wait_for};

/// Panics with a clear message unless the tests run as root (they load BPF programs and
/// create cgroups and namespaces).
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(euid, 0, "Viking's integration tests need root: run `cargo xtask test` as root");
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
