//! The real agent fed by the Consul test server, observed through its pinned maps.

use std::{
    fs::File,
    io::Read as _,
    net::IpAddr,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use aya::maps::{HashMap, Map, MapData};
use viking_common::{IPPROTO_TCP, Ip6, ServiceKey, ServiceValue, names};
use viking_sandbox::{AgentProcess, Cgroup, PinGuard};

use super::server::Consul;
use crate::cpu::{stat_cpu_ticks, ticks_to_duration};

/// Where this benchmark's agent pins its maps.
const PIN_DIR: &str = "/sys/fs/bpf/viking-bench-consul";

/// The agent config: Consul only, maps sized for `services` of `instances` (plus one
/// instance each for the changes).
pub fn config(consul: &Consul, services: u32, instances: u32) -> String {
    limits_and_consul(consul, services + 16, services * (instances + 1) + 16, (services + 16) * (instances + 2))
}

/// A config of `[limits]` (services, backends, service slots) and `consul`'s section.
pub fn limits_and_consul(consul: &Consul, services: u32, backends: u32, slots: u32) -> String {
    format!(
        "[limits]\nmax_services = {services}\nmax_backends = {backends}\nmax_service_slots = {slots}\n\n{}",
        consul.config_section()
    )
}

/// A running agent with fresh pins; stopped and uninstalled on drop.
#[derive(Debug)]
pub struct Agent {
    // Declared before `pins`: the process is gone before its pins are removed.
    process: AgentProcess,
    _pins: PinGuard,
}

impl Agent {
    /// Starts the agent on `config` with no pinned state (every sync is a full one).
    pub fn start(binary: &Path, cgroup: &Cgroup, work_dir: &Path, config: &str) -> anyhow::Result<Self> {
        let pins = PinGuard::at(binary, Path::new(PIN_DIR));
        let _ = pins.cli().remove_pins();
        let config_path = work_dir.join("viking-bench-consul.toml");
        std::fs::write(&config_path, config).with_context(|| format!("writing {}", config_path.display()))?;
        // One log per agent: the one before may still be writing to its own while it stops.
        static STARTED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let number = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log = work_dir.join(format!("viking-agent-consul-{number}.log"));
        let env = [("RUST_LOG", "warn,viking_agent::runtime=info")];
        let process = AgentProcess::spawn(pins.cli(), &config_path, cgroup.path(), &log, &env)?;
        Ok(Self { process, _pins: pins })
    }

    /// Waits until the kernel holds `services` services, each with `instances` backends;
    /// returns the time since the agent was started (program loading, ~0.3 s, included).
    /// The moment is the agent's log line after the map writes that installed the last
    /// service (scanning 100,000 map entries takes longer than the sync it would time); the
    /// map is checked afterwards.
    pub fn wait_synced(&self, services: u32, instances: u16, limit: Duration) -> anyhow::Result<Duration> {
        let deadline = Instant::now() + limit;
        let needle = format!("services={services}");
        let mut log = File::open(self.process.log_path())?;
        let mut seen = String::new();
        let synced = loop {
            let mut more = String::new();
            log.read_to_string(&mut more)?;
            seen.push_str(&more);
            if seen.lines().any(|l| l.contains("kernel maps updated") && l.ends_with(&needle)) {
                break self.process.started().elapsed();
            }
            // Keep the last partial line only.
            if let Some(cut) = seen.rfind('\n') {
                seen.drain(..=cut);
            }
            if Instant::now() > deadline {
                bail!("the agent did not sync {services} services within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let map = services_map()?;
        let complete = map.iter().filter_map(Result::ok).filter(|(k, v)| k.slot == 0 && v.count == instances).count();
        if complete as u32 != services {
            bail!("the agent logged {services} services but {complete} have {instances} backends");
        }
        Ok(synced)
    }

    /// CPU time (user + system) the agent has used so far.
    pub fn cpu_time(&self) -> anyhow::Result<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.process.pid()))?;
        Ok(ticks_to_duration(stat_cpu_ticks(&stat)))
    }

    /// Polls the pinned map until the service at `vip:port` has `count` backend slots.
    pub fn wait_backends(&self, vip: IpAddr, port: u16, count: u16, limit: Duration) -> anyhow::Result<()> {
        let map = services_map()?;
        let key = ServiceKey::new(Ip6::from_ip(vip), port.to_be(), IPPROTO_TCP, 0);
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if map.get(&key, 0).is_ok_and(|v| v.count == count) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_micros(100));
        }
        bail!("{vip}:{port} did not reach {count} backends within {limit:?}")
    }

    /// The agent's resident memory.
    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.process.pid()))?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).context("no VmRSS")?;
        Ok(line.split_whitespace().nth(1).context("VmRSS value")?.parse()?)
    }
}

fn services_map() -> anyhow::Result<HashMap<MapData, ServiceKey, ServiceValue>> {
    let data = MapData::from_pin(Path::new(PIN_DIR).join("maps").join(names::SERVICES))?;
    Ok(HashMap::try_from(Map::from_map_data(data)?)?)
}
