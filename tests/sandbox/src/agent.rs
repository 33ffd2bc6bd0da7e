//! The command lines of the real `viking-agent` that the tests, the demo and the
//! benchmarks run, spelled in one place. Each returns a [`Command`] so that the caller
//! decides about output, environment and errors.

use std::{path::Path, process::Command};

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
}
