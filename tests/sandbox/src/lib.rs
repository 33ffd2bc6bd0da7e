//! The isolated worlds Viking's tests, demo and benchmarks run in. Each piece removes
//! itself on drop, also when a test panics:
//!
//! - [`Cgroup`]: a cgroup v2 directory (programs attach here, never to the root cgroup);
//! - [`Netns`]: a network namespace with only `lo` up, anonymous (held by an fd) or named
//!   (bind-mounted under `/run/netns`, for `ip netns exec` and `nsenter`);
//! - [`process::place`]: start a program inside a cgroup and a netns;
//! - [`Backend`]: TCP/UDP servers inside a netns that answer with their own name;
//! - [`agent`]: the real agent, as every one of them runs it: [`AgentCli`] (its command
//!   lines), [`PinGuard`] (a pin directory uninstalled on drop), [`AgentProcess`] (a
//!   running `viking-agent run` with its log).
//!
//! Traffic stays inside the namespace: VIPs are in 240.0.0.0/4, for which the namespace
//! has no route, so a connect the program does not rewrite fails with `ENETUNREACH`
//! instead of leaving the machine.

pub mod agent;
pub mod backends;
pub mod cgroup;
pub mod netns;
pub mod process;

pub use agent::{AgentCli, AgentProcess, PinGuard};
pub use backends::Backend;
pub use cgroup::Cgroup;
pub use netns::Netns;

/// A name unique on this machine for this process: `viking-test-<kind>-<pid>-<n>`.
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
