//! The real `viking-agent` binary, run by a test against its own cgroup and pin directory.

use std::{
    path::{Path, PathBuf},
    process::{Child, Stdio},
    time::Duration,
};

use rustix::process::{Pid, Signal, kill_process};
use tempfile::TempDir;

use viking_sandbox::{AgentCli, Cgroup, unique_name, wait_for};

use crate::{binary, config};

/// A pin directory under `/sys/fs/bpf` owned by one test: uninstalled on drop.
#[derive(Debug)]
pub struct PinGuard {
    path: PathBuf,
}

impl PinGuard {
    /// A fresh, not yet existing pin directory.
    pub fn new() -> Self {
        Self { path: Path::new("/sys/fs/bpf").join(unique_name("pins")) }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Default for PinGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for PinGuard {
    fn drop(&mut self) {
        let agent = binary("viking-agent");
        let status = AgentCli { binary: &agent, pin_dir: &self.path }.uninstall().output();
        match status {
            Ok(output) if output.status.success() => {}
            other => eprintln!("warning: cleaning up {}: {other:?}", self.path.display()),
        }
    }
}

/// A running `viking-agent run`, its config file and its log.
#[derive(Debug)]
pub struct Agent {
    child: Option<Child>,
    dir: TempDir,
    /// Where its pins live.
    pub pin_dir: PathBuf,
    cgroup: PathBuf,
    runs: usize,
}

impl Agent {
    /// Writes `config_text` and starts the agent on `cgroup` with pins in `pins`, waiting
    /// until it reports ready.
    pub fn start(cgroup: &Cgroup, pins: &PinGuard, config_text: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        config::write(&dir.path().join("viking.toml"), config_text);
        let mut agent =
            Self { child: None, dir, pin_dir: pins.path().to_owned(), cgroup: cgroup.path().to_owned(), runs: 0 };
        agent.restart();
        agent
    }

    /// The config file the agent watches.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("viking.toml")
    }

    /// Replaces the config file (atomically).
    pub fn write_config(&self, text: &str) {
        config::write(&self.config_path(), text);
    }

    fn log_path(&self, run: usize) -> PathBuf {
        self.dir.path().join(format!("agent-{run}.log"))
    }

    /// Everything the current run has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path(self.runs)).unwrap_or_default()
    }

    /// Starts a new agent process (after [`Agent::kill`] or [`Agent::stop`]) and waits
    /// until it is ready.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "agent still running");
        self.runs += 1;
        let log = std::fs::File::create(self.log_path(self.runs)).expect("log file");
        let agent = binary("viking-agent");
        let child = AgentCli { binary: &agent, pin_dir: &self.pin_dir }
            .run(&self.config_path(), &self.cgroup)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start viking-agent");
        self.child = Some(child);
        let ready = wait_for(Duration::from_secs(20), || {
            if self.log().contains(" ready ") {
                return Some(true);
            }
            let exited = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
            exited.map(|_| false)
        });
        assert_eq!(ready, Some(true), "agent did not become ready; log:\n{}", self.log());
    }

    /// Waits until the log contains `text` (bounded), returning whether it did.
    pub fn wait_log(&self, text: &str, timeout: Duration) -> bool {
        wait_for(timeout, || self.log().contains(text).then_some(())).is_some()
    }

    /// SIGKILL: the agent gets no chance to clean up.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait (at most 10 s, then SIGKILL): a normal stop.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Our own child, not reaped yet: the pid is still its.
            let _ = kill_process(Pid::from_child(&child), Signal::TERM);
            let _ = viking_sandbox::process::wait_bounded(&mut child, Duration::from_secs(10));
        }
    }

    /// Where this run's metrics endpoint listens, from its log.
    pub fn metrics_addr(&self) -> std::net::SocketAddr {
        let log = self.log();
        let line = log.lines().find(|l| l.contains("metrics endpoint enabled")).expect("metrics endpoint in the log");
        let addr = line.split("listen=").nth(1).and_then(|rest| rest.split_whitespace().next());
        addr.and_then(|a| a.parse().ok()).unwrap_or_else(|| panic!("no address in {line:?}"))
    }

    /// `viking-agent maps dump --json` of this agent's pins, as a user would run it.
    pub fn dump(&self) -> serde_json::Value {
        dump(&self.pin_dir)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `viking-agent maps dump --json --pin-dir <dir>`.
pub fn dump(pin_dir: &Path) -> serde_json::Value {
    let agent = binary("viking-agent");
    let output = AgentCli { binary: &agent, pin_dir }.dump(true).output().expect("run maps dump");
    assert!(output.status.success(), "maps dump failed: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("dump is JSON")
}

/// The backends of the service at `vip:port` in a dump, or `None` if absent.
pub fn dumped_backends(dump: &serde_json::Value, vip: &str, port: u16) -> Option<Vec<String>> {
    dump["services"]
        .as_array()?
        .iter()
        .find(|s| s["vip"] == vip && s["port"] == port)
        .map(|s| s["backends"].as_array().into_iter().flatten().filter_map(|b| b.as_str().map(str::to_owned)).collect())
}
