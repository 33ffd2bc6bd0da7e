//! `/status` and `viking-agent status`: what is installed and how the agent is doing, as one
//! JSON document. The running agent serves it; without one, the command builds what the
//! pins alone can tell.

use std::path::Path;

use aya::programs::links::{FdLink, PinnedLink};
use serde::{Deserialize, Serialize};

use crate::dataplane::{HOOKS, pins::PinDir};

/// The status document.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The agent's version (`None`: no agent answered; read from the pins).
    pub agent_version: Option<String>,
    /// The pins' layout version.
    pub layout: Option<u32>,
    /// The pin directory.
    pub pin_dir: String,
    /// The cgroup the programs are attached to (known to a running agent).
    pub cgroup: Option<String>,
    /// Ready, as `/readyz` (`None` without an agent).
    pub ready: Option<bool>,
    /// Services (frontends) installed.
    pub services: usize,
    /// `SERVICES` entries in use and its limit (known to a running agent).
    pub service_slots: Option<(u64, u32)>,
    /// Distinct backends in use and the limit (known to a running agent).
    pub backends: Option<(usize, u32)>,
    /// Each program with a pinned link, and its kernel id.
    pub programs: Vec<ProgramStatus>,
    /// Each configured source and whether it has reported (a running agent only).
    pub sources: Vec<SourceStatus>,
}

/// One attached program.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgramStatus {
    /// Its name (and link file name).
    pub name: String,
    /// Its kernel id, or `None` when its link is missing.
    pub id: Option<u32>,
}

/// One source.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceStatus {
    /// `file`, `consul` or `docker`.
    pub name: String,
    /// Whether its first full report has been applied.
    pub reported: bool,
}

/// The programs pinned under `pins`, in attach order.
pub fn programs(pins: &PinDir) -> Vec<ProgramStatus> {
    HOOKS
        .iter()
        .map(|hook| ProgramStatus { name: hook.program.to_owned(), id: program_id(&pins.link(hook.program)) })
        .collect()
}

fn program_id(link: &Path) -> Option<u32> {
    let link = PinnedLink::from_pin(link).ok()?;
    FdLink::from(link).info().ok().map(|info| info.program_id())
}
