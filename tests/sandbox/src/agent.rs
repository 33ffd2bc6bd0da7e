//! The real `viking-agent` as the tests, the demo and the benchmarks run it, written once:
//!
//! - [`AgentCli`]: its command lines (`run`, `uninstall`, `maps dump`);
//! - [`PinGuard`]: a pin directory owned by one test or benchmark, uninstalled on drop;
//! - [`AgentProcess`]: a running `viking-agent run` with its log, killed on drop;
//! - [`write_config`]: replacing the config file the agent watches.
//!
//! Failures are returned, not asserted: the tests turn them into panics, the benchmarks
//! into errors in their report.

use std::{
    fs::File,
    io,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use rustix::process::{Pid, Signal, kill_process};

use crate::{unique_name, wait_for};

/// One installation of the agent: its binary and the pin directory it owns.
#[derive(Clone, Copy, Debug)]
pub struct AgentCli<'a> {
    /// The `viking-agent` binary.
    pub binary: &'a Path,
    /// Its `--pin-dir`.
    pub pin_dir: &'a Path,
}

impl AgentCli<'_> {
    /// `viking-agent run --config <config> --cgroup <cgroup> --pin-dir <pins>`.
    pub fn run(&self, config: &Path, cgroup: &Path) -> Command {
        let mut command = Command::new(self.binary);
        command.arg("run").arg("--config").arg(config).arg("--cgroup").arg(cgroup).arg("--pin-dir").arg(self.pin_dir);
        command
    }

    /// `viking-agent uninstall --pin-dir <pins>`.
    pub fn uninstall(&self) -> Command {
        let mut command = Command::new(self.binary);
        command.args(["uninstall", "--pin-dir"]).arg(self.pin_dir);
        command
    }

    /// `viking-agent maps dump [--json] --pin-dir <pins>`.
    pub fn dump(&self, json: bool) -> Command {
        let mut command = Command::new(self.binary);
        command.args(["maps", "dump"]);
        if json {
            command.arg("--json");
        }
        command.arg("--pin-dir").arg(self.pin_dir);
        command
    }

    /// Runs [`AgentCli::uninstall`] to its end: the programs are detached and the pins
    /// removed (a directory with nothing pinned is no error). The error carries the
    /// agent's own message.
    pub fn remove_pins(&self) -> io::Result<()> {
        let output = self.uninstall().output()?;
        if !output.status.success() {
            return Err(io::Error::other(format!(
                "viking-agent uninstall --pin-dir {} failed: {}",
                self.pin_dir.display(),
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        Ok(())
    }

    /// Runs `maps dump --json`, as a user would, and parses its answer.
    pub fn dump_json(&self) -> io::Result<serde_json::Value> {
        let output = self.dump(true).output()?;
        if !output.status.success() {
            return Err(io::Error::other(format!(
                "viking-agent maps dump failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        serde_json::from_slice(&output.stdout).map_err(|err| io::Error::other(format!("maps dump is not JSON: {err}")))
    }
}

/// A pin directory under `/sys/fs/bpf` owned by one test or benchmark: on drop the agent's
/// `uninstall` detaches its programs and removes it (a failure is a warning: a drop cannot
/// fail).
#[derive(Debug)]
pub struct PinGuard {
    binary: PathBuf,
    path: PathBuf,
}

impl PinGuard {
    /// A fresh, not yet existing directory `viking-test-pins-<pid>-<n>`, for `binary`.
    pub fn unique(binary: &Path) -> Self {
        Self::at(binary, &Path::new("/sys/fs/bpf").join(unique_name("pins")))
    }

    /// The directory `path`, owned from now on. Whatever is pinned there already (left by
    /// a killed run) stays until [`AgentCli::remove_pins`] or the drop.
    pub fn at(binary: &Path, path: &Path) -> Self {
        Self { binary: binary.to_owned(), path: path.to_owned() }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The agent's command lines on this directory.
    pub fn cli(&self) -> AgentCli<'_> {
        AgentCli { binary: &self.binary, pin_dir: &self.path }
    }
}

impl Drop for PinGuard {
    fn drop(&mut self) {
        if let Err(err) = self.cli().remove_pins() {
            eprintln!("warning: cleaning up {}: {err}", self.path.display());
        }
    }
}

/// A running `viking-agent run` whose log (its stderr) goes to a file; killed on drop.
#[derive(Debug)]
pub struct AgentProcess {
    child: Child,
    log: PathBuf,
    started: Instant,
}

impl AgentProcess {
    /// Starts `viking-agent run` on `config` and `cgroup`, with `env` added to its
    /// environment and its stderr written to a new file `log`; returns without waiting.
    pub fn spawn(
        cli: AgentCli<'_>,
        config: &Path,
        cgroup: &Path,
        log: &Path,
        env: &[(&str, &str)],
    ) -> io::Result<Self> {
        let log_file = File::create(log).map_err(|err| context(err, format!("creating {}", log.display())))?;
        let started = Instant::now();
        let child = cli
            .run(config, cgroup)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .map_err(|err| context(err, format!("starting {}", cli.binary.display())))?;
        Ok(Self { child, log: log.to_owned(), started })
    }

    /// When it was started (taken just before the spawn).
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Everything it has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Its last 15 log lines and where the whole log is, for an error message.
    pub fn log_tail(&self) -> String {
        let text = self.log();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(15)..].join("\n");
        format!("{tail}\n(full log: {})", self.log.display())
    }

    /// Its exit status, if it has exited.
    pub fn exited(&mut self) -> io::Result<Option<ExitStatus>> {
        self.child.try_wait()
    }

    /// Waits (at most `timeout`) until it logs that it is ready; `false` when it exited
    /// or the time ran out first.
    pub fn wait_ready(&mut self, timeout: Duration) -> bool {
        let ready = wait_for(timeout, || {
            if self.log().contains(" ready ") {
                return Some(true);
            }
            self.child.try_wait().ok().flatten().map(|_| false)
        });
        ready == Some(true)
    }

    /// SIGTERM, then waits at most `timeout` before SIGKILL: a normal stop. Returns the
    /// exit status, or `None` when it had to be killed.
    pub fn stop(&mut self, timeout: Duration) -> Option<ExitStatus> {
        // Signalled only while not reaped: until then the pid is still its.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = kill_process(Pid::from_child(&self.child), Signal::TERM);
        }
        crate::process::wait_bounded(&mut self.child, timeout)
    }

    /// SIGKILL: the agent gets no chance to clean up.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Replaces the config file at `path` atomically (write, then rename), as editors and
/// config tools do, so the polling agent never reads half a file.
pub fn write_config(path: &Path, text: &str) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(|err| context(err, format!("writing {}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(|err| context(err, format!("renaming {} to {}", tmp.display(), path.display())))
}

/// `err` with what was being done in front of it.
fn context(err: io::Error, doing: String) -> io::Error {
    io::Error::new(err.kind(), format!("{doing}: {err}"))
}
