//! The real agent fed by the Consul test server, observed through its pinned maps.

use std::{
    fs::File,
    net::IpAddr,
    path::Path,
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use aya::maps::{HashMap, Map, MapData};
use consul_test_server::ConsulTestServer;
use viking_common::{IPPROTO_TCP, Ip6, ServiceKey, ServiceValue, names};
use viking_sandbox::{AgentCli, Cgroup};

/// Where this benchmark's agent pins its maps.
const PIN_DIR: &str = "/sys/fs/bpf/viking-bench-consul";

/// The agent config: Consul only, maps sized for `services`.
pub fn config(server: &ConsulTestServer, services: u32) -> String {
    format!(
        "[limits]\nmax_services = {}\nmax_service_slots = {}\n\n[consul]\naddress = {:?}\n",
        services + 16,
        (services + 16) * 4,
        server.addr().to_string()
    )
}

/// A running agent with fresh pins; stopped and uninstalled on drop.
#[derive(Debug)]
pub struct Agent {
    binary: std::path::PathBuf,
    child: Child,
    started: Instant,
}

impl Agent {
    /// Starts the agent on `config` with no pinned state (every sync is a full one).
    pub fn start(binary: &Path, cgroup: &Cgroup, work_dir: &Path, config: &str) -> anyhow::Result<Self> {
        uninstall(binary);
        let config_path = work_dir.join("viking-bench-consul.toml");
        std::fs::write(&config_path, config).with_context(|| format!("writing {}", config_path.display()))?;
        let log = File::create(work_dir.join("viking-agent-consul.log"))?;
        let started = Instant::now();
        let child = cli(binary)
            .run(&config_path, cgroup.path())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        Ok(Self { binary: binary.to_owned(), child, started })
    }

    /// Waits until the kernel holds `services` services each with one backend; returns the
    /// time since the agent was started. (Program loading, ~0.5 s, is part of it.)
    pub fn wait_synced(&self, services: u32, limit: Duration) -> anyhow::Result<Duration> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(map) = services_map() {
                let complete = map.iter().filter_map(Result::ok).filter(|(k, v)| k.slot == 0 && v.count == 1).count();
                if complete as u32 >= services {
                    return Ok(self.started.elapsed());
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!("the agent did not sync {services} services within {limit:?}")
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
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).context("no VmRSS")?;
        Ok(line.split_whitespace().nth(1).context("VmRSS value")?.parse()?)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        uninstall(&self.binary);
    }
}

fn services_map() -> anyhow::Result<HashMap<MapData, ServiceKey, ServiceValue>> {
    let data = MapData::from_pin(Path::new(PIN_DIR).join("maps").join(names::SERVICES))?;
    Ok(HashMap::try_from(Map::from_map_data(data)?)?)
}

/// This benchmark's agent command lines.
fn cli(binary: &Path) -> AgentCli<'_> {
    AgentCli { binary, pin_dir: Path::new(PIN_DIR) }
}

fn uninstall(binary: &Path) {
    let _ = cli(binary).uninstall().output();
}
