//! The real `viking-agent` binary, run by a test against its own cgroup and pin directory.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use tempfile::TempDir;

use viking_sandbox::{AgentCli, AgentProcess, Cgroup, PinGuard, wait_for};

use crate::{binary, config};

/// A fresh pin directory for the tests' agent binary; uninstalled on drop.
pub fn pins() -> PinGuard {
    PinGuard::unique(&binary("viking-agent"))
}

/// A running `viking-agent run`, its config file and its log (one file per run).
#[derive(Debug)]
pub struct Agent {
    process: Option<AgentProcess>,
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
            Self { process: None, dir, pin_dir: pins.path().to_owned(), cgroup: cgroup.path().to_owned(), runs: 0 };
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
        assert!(self.process.is_none(), "agent still running");
        self.runs += 1;
        let agent = binary("viking-agent");
        let cli = AgentCli { binary: &agent, pin_dir: &self.pin_dir };
        let env = [("RUST_LOG", "info"), ("NO_COLOR", "1")];
        let process = AgentProcess::spawn(cli, &self.config_path(), &self.cgroup, &self.log_path(self.runs), &env);
        let process = self.process.insert(process.expect("start viking-agent"));
        let ready = process.wait_ready(Duration::from_secs(20));
        assert!(ready, "agent did not become ready; log:\n{}", self.log());
    }

    /// Waits until the log contains `text` (bounded), returning whether it did.
    pub fn wait_log(&self, text: &str, timeout: Duration) -> bool {
        wait_for(timeout, || self.log().contains(text).then_some(())).is_some()
    }

    /// SIGKILL: the agent gets no chance to clean up.
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill();
        }
    }

    /// SIGTERM and wait (at most 10 s, then SIGKILL): a normal stop.
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.stop(Duration::from_secs(10));
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

/// Runs `viking-agent maps dump --json --pin-dir <dir>`.
pub fn dump(pin_dir: &Path) -> serde_json::Value {
    let agent = binary("viking-agent");
    AgentCli { binary: &agent, pin_dir }.dump_json().unwrap_or_else(|err| panic!("{err}"))
}

/// The backends of the service at `vip:port` in a dump, or `None` if absent.
pub fn dumped_backends(dump: &serde_json::Value, vip: &str, port: u16) -> Option<Vec<String>> {
    dump["services"]
        .as_array()?
        .iter()
        .find(|s| s["vip"] == vip && s["port"] == port)
        .map(|s| s["backends"].as_array().into_iter().flatten().filter_map(|b| b.as_str().map(str::to_owned)).collect())
}
