//! Viking as users run it: the real `viking-agent` binary, attached to the bench's Viking
//! cgroup, serving N services from a generated TOML config that the bench rewrites for each
//! sweep point (the agent applies the change as a diff, as it would on a live host).

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use aya::programs::links::PinnedLink;
use viking_common::limits;
use viking_sandbox::{AgentCli, AgentProcess, Cgroup, PinGuard, agent::write_config};

use crate::protocol::{BACKENDS, VIP_PORT, vip};

/// Where the bench's agent pins its maps and links.
const PIN_DIR: &str = "/sys/fs/bpf/viking-bench";

/// A running agent; on drop it is stopped and its programs and pins are removed.
#[derive(Debug)]
pub struct Agent {
    // Declared before `pins`: the process is gone before its pins are removed.
    process: AgentProcess,
    pins: PinGuard,
    config: PathBuf,
    limits: String,
}

impl Agent {
    /// Starts the agent on `cgroup` with maps sized for `max_services` and no service yet.
    pub fn start(binary: &Path, cgroup: &Cgroup, work_dir: &Path, max_services: u32) -> anyhow::Result<Self> {
        // A killed earlier run may have left its pins (and attached links) behind.
        AgentCli { binary, pin_dir: Path::new(PIN_DIR) }.remove_pins()?;
        let pins = PinGuard::at(binary, Path::new(PIN_DIR));
        let config = work_dir.join("viking-bench.toml");
        let log = work_dir.join("viking-agent.log");
        let limits = limits_section(max_services);
        write_config(&config, &limits)?;
        let process = AgentProcess::spawn(pins.cli(), &config, cgroup.path(), &log, &[])?;
        let mut agent = Self { process, pins, config, limits };
        agent.wait_for_services(0, Duration::from_secs(30))?;
        Ok(agent)
    }

    /// Rewrites the config with services `0..count` (each with both backends) and waits
    /// until the kernel maps hold all of them; returns how long that took.
    pub fn set_services(&mut self, count: u32, limit: Duration) -> anyhow::Result<Duration> {
        let mut text = self.limits.clone();
        let backends = BACKENDS.map(|b| format!("\"{b}\"")).join(", ");
        for i in 0..count {
            let _ = write!(
                text,
                "\n[[service]]\nname = \"svc-{i}\"\nvip = \"{}\"\nport = {VIP_PORT}\nbackends = [{backends}]\n",
                vip(i)
            );
        }
        let start = Instant::now();
        write_config(&self.config, &text)?;
        self.wait_for_services(count, limit)?;
        Ok(start.elapsed())
    }

    /// The agent's process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The kernel id of one of the agent's programs (e.g. `viking_connect4`), found through
    /// the link the agent pinned, so no other Viking on the machine is mistaken for it.
    pub fn program_id(&self, program: &str) -> anyhow::Result<u32> {
        let pin = self.pins.path().join("links").join(program);
        let link = PinnedLink::from_pin(&pin).with_context(|| format!("opening the pinned link {}", pin.display()))?;
        let info = aya::programs::links::FdLink::from(link)
            .info()
            .with_context(|| format!("reading link {}", pin.display()))?;
        Ok(info.program_id())
    }

    /// Polls `maps dump --json` until it lists `count` services.
    fn wait_for_services(&mut self, count: u32, limit: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        let mut seen = None;
        loop {
            if let Some(status) = self.process.exited()? {
                bail!("viking-agent exited ({status}); its log:\n{}", self.process.log_tail());
            }
            if let Ok(n) = self.dumped_services() {
                if n == count as usize {
                    return Ok(());
                }
                seen = Some(n);
            }
            if Instant::now() >= deadline {
                bail!(
                    "viking-agent did not install {count} services within {} s (the kernel maps hold {}); its log:\n{}",
                    limit.as_secs(),
                    seen.map_or("an unreadable state".into(), |n| format!("{n}")),
                    self.process.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(if count > 10_000 { 1000 } else { 100 }));
        }
    }

    /// Number of services `maps dump --json` reports.
    fn dumped_services(&self) -> anyhow::Result<usize> {
        let dump = self.pins.cli().dump_json()?;
        dump["services"].as_array().map(Vec::len).context("no services array in the dump")
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        // A normal stop; the pins go when `pins` is dropped, right after.
        self.process.stop(Duration::from_secs(5));
    }
}

/// `[limits]` sized for the largest sweep point (the agent's defaults, raised where needed):
/// the same map sizes for every point, as on a host whose limits are set once.
fn limits_section(max_services: u32) -> String {
    let services = max_services.next_power_of_two().max(limits::MAX_SERVICES);
    // One slot-0 entry and one entry per backend slot per service, with room to spare.
    let slots = (services * 4).max(limits::MAX_SERVICE_SLOTS);
    format!(
        "# Generated by viking-bench (cargo xtask bench).\n[limits]\nmax_services = {services}\nmax_service_slots = {slots}\n"
    )
}
