//! `viking-agent maps dump`: what the kernel holds, read from the pinned maps (not from any
//! agent's memory), so it works while the agent is stopped.

use std::path::Path;

use anyhow::Context as _;
use serde::Serialize;

use crate::{
    dataplane::{
        pins::PinDir,
        tables::{KernelTables, MapSource},
    },
    model::{OutlierDetection, Protocol},
    policy::writer::PolicyTables,
};

/// One service in the dump.
#[derive(Debug, Serialize)]
pub struct DumpedService {
    /// Service name.
    pub name: String,
    /// Virtual IP.
    pub vip: String,
    /// Virtual port.
    pub port: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
    /// Backend selection.
    pub algorithm: String,
    /// Index into the per-service arrays.
    pub service_id: u32,
    /// Client affinity window in seconds (0 = off).
    pub affinity_seconds: u32,
    /// Distinct backends, in order of their first slot.
    pub backends: Vec<String>,
    /// Backend slots (more than `backends` when weighted).
    pub slots: usize,
    /// Per backend: weight (slots held) and counters.
    pub backend_stats: Vec<DumpedBackend>,
    /// When failing backends are ejected.
    pub outlier: DumpedOutlier,
    /// Counters summed over CPUs.
    pub stats: DumpedStats,
}

/// One backend of a service in the dump.
#[derive(Debug, Serialize)]
pub struct DumpedBackend {
    /// `ip:port`.
    pub address: String,
    /// Slots it holds in this service.
    pub weight: u16,
    /// Connects sent to it (by every service it belongs to).
    pub connects: u64,
    /// Open connections, counted for `least_conn` services.
    pub active: u64,
    /// Milliseconds the backend stays ejected (`None`: it is not).
    pub ejected_for_ms: Option<u64>,
    /// Connects that failed since its last success.
    pub consecutive_failures: u64,
    /// TCP connects that failed (refused, reset, SYN timed out).
    pub failures: u64,
    /// Times it was ejected.
    pub ejections: u64,
    /// Connects that chose it while ejected and went to another backend.
    pub skipped: u64,
}

/// A service's outlier ejection settings in the dump.
#[derive(Debug, Serialize)]
pub struct DumpedOutlier {
    /// Failures in a row that eject a backend (0 = off).
    pub consecutive_failures: u16,
    /// The first ejection, in seconds.
    pub ejection_seconds: u32,
    /// The longest ejection, in seconds.
    pub max_ejection_seconds: u32,
    /// The largest share of backends ejected at once, in percent.
    pub max_ejection_percent: u8,
}

impl From<OutlierDetection> for DumpedOutlier {
    fn from(outlier: OutlierDetection) -> Self {
        Self {
            consecutive_failures: outlier.consecutive_failures,
            ejection_seconds: outlier.ejection_secs,
            max_ejection_seconds: outlier.max_ejection_secs,
            max_ejection_percent: outlier.max_ejection_percent,
        }
    }
}

/// Per-service counters.
#[derive(Debug, Serialize)]
pub struct DumpedStats {
    /// Connects sent to a backend.
    pub redirected: u64,
    /// Connects refused for lack of a backend.
    pub refused_no_backend: u64,
    /// Connects refused by a container's `enforce` policy.
    pub refused_by_policy: u64,
}

/// The whole dump, as printed by `--json`.
#[derive(Debug, Serialize)]
pub struct Dump {
    /// The layout version of the pins.
    pub layout: u32,
    /// Every service, by VIP, port and protocol.
    pub services: Vec<DumpedService>,
    /// Every container (cgroup) with a policy or port overlays.
    pub policy: Vec<DumpedPolicy>,
    /// The backstop for containers without an entry yet, when it is on.
    pub container_scope: Option<DumpedScope>,
}

/// The backstop in the dump.
#[derive(Debug, Serialize)]
pub struct DumpedScope {
    /// Cgroup id of the container runtime's parent cgroup.
    pub parent_cgroup_id: u64,
    /// Its level in the cgroup hierarchy.
    pub parent_level: u32,
    /// The mode of its child cgroups that have no entry.
    pub mode: String,
    /// VIP connects from such cgroups refused (`enforce`).
    pub refused: u64,
    /// VIP connects from such cgroups allowed and reported (`audit`).
    pub audited: u64,
}

/// One container's policy in the dump.
#[derive(Debug, Default, Serialize)]
pub struct DumpedPolicy {
    /// The container's cgroup id.
    pub cgroup_id: u64,
    /// `off`, `audit`, `enforce` or `bypass`.
    pub mode: String,
    /// VIPs it declared.
    pub allowed: Vec<String>,
    /// Its port overlays on the ambassador address.
    pub overlays: Vec<DumpedOverlay>,
}

/// One port overlay in the dump.
#[derive(Debug, Serialize)]
pub struct DumpedOverlay {
    /// Port on the ambassador address.
    pub port: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
    /// The service frontend it leads to.
    pub frontend: String,
}

/// Reads the pinned maps under `pin_dir`.
pub fn read(pin_dir: &Path) -> anyhow::Result<Dump> {
    let tables = KernelTables::open(MapSource::Pinned(&PinDir::new(pin_dir)))
        .with_context(|| format!("is Viking installed at {}? (`--pin-dir`)", pin_dir.display()))?;
    let snapshot = tables.snapshot()?;
    let now = crate::dataplane::monotonic_ns();
    let mut services = Vec::new();
    for (key, service) in &snapshot.services {
        let stats = tables.stats(service.entry.service_id)?;
        let mut backend_stats: Vec<DumpedBackend> = Vec::new();
        for slot in &service.slots {
            let address = match slot.and_then(|id| snapshot.backends.get(&id)) {
                Some(addr) => addr.to_string(),
                None => "(missing)".into(),
            };
            if let Some(seen) = backend_stats.iter_mut().find(|b| b.address == address) {
                seen.weight += 1;
                continue;
            }
            let ((connects, active), health) = match slot {
                Some(id) => (tables.backend_stats(*id)?, tables.backend_health(*id)?),
                None => ((0, 0), viking_common::BackendHealth::default()),
            };
            backend_stats.push(DumpedBackend {
                address,
                weight: 1,
                connects,
                active,
                ejected_for_ms: health.is_ejected(now).then(|| (health.ejected_until_ns - now) / 1_000_000),
                consecutive_failures: health.consecutive_failures,
                failures: health.failures_total,
                ejections: health.ejections_total,
                skipped: health.skipped_total,
            });
        }
        services.push(DumpedService {
            name: service.name.clone(),
            vip: key.vip.to_ip().to_string(),
            port: key.port(),
            protocol: Protocol::from_number(key.protocol).map_or_else(|| key.protocol.to_string(), |p| p.name().into()),
            algorithm: viking_common::Algorithm::from_u8(service.entry.algorithm).name().into(),
            service_id: service.entry.service_id,
            affinity_seconds: service.entry.affinity_secs,
            backends: backend_stats.iter().map(|b| b.address.clone()).collect(),
            slots: service.slots.len(),
            backend_stats,
            outlier: OutlierDetection::from_policy(&service.outlier).into(),
            stats: DumpedStats {
                redirected: stats.redirected,
                refused_no_backend: stats.refused_no_backend,
                refused_by_policy: stats.refused_by_policy,
            },
        });
    }
    let (policy, container_scope) = read_policy(pin_dir)?;
    let layout =
        crate::dataplane::pinned_layout(&PinDir::new(pin_dir))?.map_or(viking_common::LAYOUT_VERSION, |l| l.version);
    Ok(Dump { layout, services, policy, container_scope })
}

fn read_policy(pin_dir: &Path) -> anyhow::Result<(Vec<DumpedPolicy>, Option<DumpedScope>)> {
    let tables = PolicyTables::open(MapSource::Pinned(&PinDir::new(pin_dir)))?;
    let policy = tables.read()?;
    let stats = tables.unknown_container_stats()?;
    let scope = policy.scope.map(|(scope, mode)| DumpedScope {
        parent_cgroup_id: scope.cgroup_id,
        parent_level: scope.level,
        mode: mode.name().into(),
        refused: stats.refused,
        audited: stats.audited,
    });
    let mut by_cgroup: std::collections::BTreeMap<u64, DumpedPolicy> = std::collections::BTreeMap::new();
    fn entry(map: &mut std::collections::BTreeMap<u64, DumpedPolicy>, cgroup_id: u64) -> &mut DumpedPolicy {
        map.entry(cgroup_id).or_insert_with(|| DumpedPolicy { cgroup_id, mode: "off".into(), ..Default::default() })
    }
    for (cgroup_id, mode) in &policy.modes {
        entry(&mut by_cgroup, *cgroup_id).mode = mode.name().into();
    }
    for (cgroup_id, vip) in &policy.allowed {
        entry(&mut by_cgroup, *cgroup_id).allowed.push(vip.to_string());
    }
    for ((cgroup_id, port, protocol), (vip, vip_port)) in &policy.overlays {
        let frontend = format!("{}/{protocol}", std::net::SocketAddr::new(*vip, *vip_port));
        entry(&mut by_cgroup, *cgroup_id).overlays.push(DumpedOverlay {
            port: *port,
            protocol: protocol.name().into(),
            frontend,
        });
    }
    Ok((by_cgroup.into_values().collect(), scope))
}

/// Prints the dump as a table or as JSON; with `service`, only that service's frontends
/// (an error when there is none).
pub fn dump(pin_dir: &Path, json: bool, service: Option<&str>) -> anyhow::Result<()> {
    let mut dump = read(pin_dir)?;
    if let Some(name) = service {
        dump.services.retain(|s| s.name == name);
        anyhow::ensure!(!dump.services.is_empty(), "no service named {name:?} is pinned at {}", pin_dir.display());
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&dump)?);
        return Ok(());
    }
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::NOTHING).set_header([
        "NAME",
        "FRONTEND",
        "ALGORITHM",
        "BACKENDS",
        "REDIRECTED",
        "REFUSED",
    ]);
    for s in &dump.services {
        let vip = s.vip.parse::<std::net::IpAddr>().map(|ip| std::net::SocketAddr::new(ip, s.port).to_string());
        table.add_row([
            s.name.clone(),
            format!("{}/{}", vip.unwrap_or_else(|_| s.vip.clone()), s.protocol),
            s.algorithm.clone(),
            if s.backends.is_empty() {
                "(none: connects refused)".into()
            } else {
                let shown: Vec<String> = s.backend_stats.iter().map(describe_backend).collect();
                shown.join(" ")
            },
            s.stats.redirected.to_string(),
            (s.stats.refused_no_backend + s.stats.refused_by_policy).to_string(),
        ]);
    }
    println!("{table}");
    println!("{} service(s) pinned at {} (layout {})", dump.services.len(), pin_dir.display(), dump.layout);
    if !dump.policy.is_empty() {
        let mut table = comfy_table::Table::new();
        table.load_preset(comfy_table::presets::NOTHING).set_header(["CGROUP", "MODE", "DECLARED VIPS", "OVERLAYS"]);
        for p in &dump.policy {
            let overlays: Vec<String> =
                p.overlays.iter().map(|o| format!("{}/{} -> {}", o.port, o.protocol, o.frontend)).collect();
            table.add_row([p.cgroup_id.to_string(), p.mode.clone(), p.allowed.join(" "), overlays.join(" ")]);
        }
        println!("\n{table}");
    }
    if let Some(scope) = &dump.container_scope {
        println!(
            "\ncontainers without an entry yet (cgroups below {}): {}; {} VIP connect(s) refused, {} audited",
            scope.parent_cgroup_id, scope.mode, scope.refused, scope.audited
        );
    }
    Ok(())
}

/// `ip:port`, with its weight when above 1, its open connections when counted, and its
/// ejection while it lasts.
fn describe_backend(backend: &DumpedBackend) -> String {
    let mut text = backend.address.clone();
    if backend.weight > 1 {
        text.push_str(&format!(" x{}", backend.weight));
    }
    if backend.active > 0 {
        text.push_str(&format!(" ({} open)", backend.active));
    }
    if let Some(ms) = backend.ejected_for_ms {
        text.push_str(&format!(" (ejected for {:.1} s, {} failures)", ms as f64 / 1000.0, backend.failures));
    }
    text
}
