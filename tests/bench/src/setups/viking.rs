//! Viking as users run it: the real `viking-agent` binary, attached to the bench's Viking
//! cgroup, serving N services from a generated TOML config that the bench rewrites for each
//! sweep point (the agent applies the change as a diff, as it would on a live host).

use std::{
    fmt::Write as _,
    fs::File,
    path::{Path, PathBuf},
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use aya::programs::links::PinnedLink;
use rustix::process::{Pid, Signal, kill_process};
use viking_common::limits;
use viking_sandbox::{AgentCli, Cgroup};

use crate::protocol::{BACKENDS, VIP_PORT, vip};

/// Where the bench's agent pins its maps and links.
const PIN_DIR: &str = "/sys/fs/bpf/viking-bench";

/// A running agent; on drop it is stopped and its programs and pins are removed.
#[derive(Debug)]
pub struct Agent {
    binary: PathBuf,
    config: PathBuf,
    log: PathBuf,
    limits: String,
    child: Child,
}

impl Agent {
    /// Starts the agent on `cgroup` with maps sized for `max_services` and no service yet.
    pub fn start(binary: &Path, cgroup: &Cgroup, work_dir: &Path, max_services: u32) -> anyhow::Result<Self> {
        // A killed earlier run may have left its pins (and attached links) behind.
        uninstall(binary)?;
        let config = work_dir.join("viking-bench.toml");
        let log = work_dir.join("viking-agent.log");
        let limits = limits_section(max_services);
        write_atomically(&config, &limits)?;
        let child = cli(binary)
            .run(&config, cgroup.path())
            .stdout(Stdio::null())
            .stderr(File::create(&log).with_context(|| format!("creating {}", log.display()))?)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut agent = Self { binary: binary.to_owned(), config, log, limits, child };
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
        write_atomically(&self.config, &text)?;
        self.wait_for_services(count, limit)?;
        Ok(start.elapsed())
    }

    /// The agent's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The kernel id of one of the agent's programs (e.g. `viking_connect4`), found through
    /// the link the agent pinned, so no other Viking on the machine is mistaken for it.
    pub fn program_id(&self, program: &str) -> anyhow::Result<u32> {
        let pin = Path::new(PIN_DIR).join("links").join(program);
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
            if let Some(status) = self.child.try_wait()? {
                bail!("viking-agent exited ({status}); its log:\n{}", self.log_tail());
            }
            if let Ok(n) = dumped_services(&self.binary) {
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
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(if count > 10_000 { 1000 } else { 100 }));
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(15)..].join("\n");
        format!("{tail}\n(full log: {})", self.log.display())
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        // Our own child, not reaped yet: the pid is still its.
        let _ = kill_process(Pid::from_child(&self.child), Signal::TERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Err(err) = uninstall(&self.binary) {
            eprintln!("viking-bench: warning: {err:#}");
        }
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

/// Writes through a temporary file and a rename, so the polling agent never reads half a
/// config.
fn write_atomically(path: &Path, text: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
}

/// Number of services `maps dump --json` reports.
/// The bench agent's command lines.
fn cli(binary: &Path) -> AgentCli<'_> {
    AgentCli { binary, pin_dir: Path::new(PIN_DIR) }
}

fn dumped_services(binary: &Path) -> anyhow::Result<usize> {
    let output = cli(binary).dump(true).output()?;
    let dump: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    dump["services"].as_array().map(Vec::len).context("no services array in the dump")
}

fn uninstall(binary: &Path) -> anyhow::Result<()> {
    let output = cli(binary).uninstall().output()?;
    if !output.status.success() {
        bail!("viking-agent uninstall --pin-dir {PIN_DIR} failed: {}", String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(())
}
