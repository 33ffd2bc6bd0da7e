//! Harness for Viking's integration tests. Every test builds its own world and tears it
//! down on drop, also when it panics:
//!
//! - [`TestCgroup`]: a fresh cgroup v2 directory (programs attach here, never to the root);
//! - [`TestNetns`]: a fresh network namespace with only `lo` up, held by an fd (no name, so
//!   nothing leaks even if the test process is killed);
//! - [`backends`]: TCP/UDP servers inside that netns that answer with their own name;
//! - [`Agent`]: the real `viking-agent` binary with its own pin directory;
//! - [`client`]: the `viking-testkit` client, run as a process inside the cgroup and netns.
//!
//! Traffic only ever goes to addresses inside the test's own netns; VIPs are in
//! 240.0.0.0/4, which the netns has no route for, so a connect the program does not
//! rewrite fails with `ENETUNREACH` instead of leaving the machine.

pub mod agent;
pub mod backends;
pub mod cgroup;
pub mod client;
pub mod config;
pub mod netns;
pub mod process;

pub use agent::{Agent, PinGuard};
pub use cgroup::TestCgroup;
pub use netns::TestNetns;

/// Panics with a clear message unless the tests run as root (they load BPF programs and
/// create cgroups and namespaces).
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(euid, 0, "Viking's integration tests need root: run `cargo xtask test` as root");
}

/// A name unique within this machine for this test run: `viking-test-<pid>-<n>`.
pub fn unique_name(kind: &str) -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!("viking-test-{kind}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Polls `check` every 20 ms until it returns `Some`, for at most `timeout`.
pub fn wait_for<T>(timeout: std::time::Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
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
