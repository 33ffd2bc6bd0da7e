//! `viking-agent maps dump`: what the kernel holds, read from the pinned maps (not from any
//! agent's memory), so it works while the agent is stopped.
//!
//! The dump is a typed view of the maps; `--json` serializes it as it is, and the table is
//! rendered from the same values.

use std::{
    collections::BTreeMap,
    fmt::{self, Write as _},
    net::{IpAddr, SocketAddr},
    path::Path,
};

use anyhow::Context as _;
use serde::Serialize;
use viking_common::{Algorithm, PolicyMode};

use crate::{
    dataplane::{
        pins::PinDir,
        tables::{KernelTables, MapSource},
    },
    model::{Frontend, OutlierDetection, Protocol},
    policy::writer::PolicyTables,
};

/// One service in the dump.
#[derive(Debug, Serialize)]
pub struct DumpedService {
    /// Service name.
    pub name: String,
    /// Virtual IP.
    pub vip: IpAddr,
    /// Virtual port.
    pub port: u16,
    /// The protocol of its map key.
    pub protocol: KeyProtocol,
    /// Backend selection.
    pub algorithm: Algorithm,
    /// Index into the per-service arrays.
    pub service_id: u32,
    /// Client affinity window in seconds (0 = off).
    pub affinity_seconds: u32,
    /// Distinct backends, in order of their first slot (`None`: a slot names a backend id
    /// that has no address).
    pub backends: Vec<Option<SocketAddr>>,
    /// Backend slots (more than `backends` when weighted).
    pub slots: usize,
    /// Per backend: weight (slots held) and counters.
    pub backend_stats: Vec<DumpedBackend>,
    /// When failing backends are ejected.
    pub outlier: DumpedOutlier,
    /// Counters summed over CPUs.
    pub stats: DumpedStats,
}

/// The protocol in a `SERVICES` key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum KeyProtocol {
    /// TCP or UDP, the protocols this agent writes (`"tcp"`, `"udp"`).
    Served(Protocol),
    /// Any other IP protocol number, which only another writer can have put there: shown
    /// as it is, since the dump is for finding out what the kernel holds.
    Other(u8),
}

impl From<u8> for KeyProtocol {
    fn from(number: u8) -> Self {
        Protocol::from_number(number).map_or(Self::Other(number), Self::Served)
    }
}

impl fmt::Display for KeyProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Served(protocol) => protocol.fmt(f),
            Self::Other(number) => number.fmt(f),
        }
    }
}

/// One backend of a service in the dump.
#[derive(Debug, Serialize)]
pub struct DumpedBackend {
    /// Its address (`None`: a slot names a backend id that has no address).
    pub address: Option<SocketAddr>,
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
    pub mode: PolicyMode,
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
    pub mode: PolicyMode,
    /// VIPs it declared.
    pub allowed: Vec<IpAddr>,
    /// Its port overlays on the ambassador address.
    pub overlays: Vec<DumpedOverlay>,
}

/// One port overlay in the dump.
#[derive(Debug, Serialize)]
pub struct DumpedOverlay {
    /// Port on the ambassador address.
    pub port: u16,
    /// `tcp` or `udp`.
    pub protocol: Protocol,
    /// The service frontend it leads to.
    pub frontend: Frontend,
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
            let address = slot.and_then(|id| snapshot.backends.get(&id)).copied();
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
            vip: key.vip.to_ip(),
            port: key.port(),
            protocol: key.protocol.into(),
            algorithm: Algorithm::from_u8(service.entry.algorithm),
            service_id: service.entry.service_id,
            affinity_seconds: service.entry.affinity_secs,
            backends: backend_stats.iter().map(|b| b.address).collect(),
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
        mode,
        refused: stats.refused,
        audited: stats.audited,
    });
    let mut by_cgroup: BTreeMap<u64, DumpedPolicy> = BTreeMap::new();
    fn entry(map: &mut BTreeMap<u64, DumpedPolicy>, cgroup_id: u64) -> &mut DumpedPolicy {
        map.entry(cgroup_id).or_insert_with(|| DumpedPolicy { cgroup_id, ..Default::default() })
    }
    for (cgroup_id, mode) in &policy.modes {
        entry(&mut by_cgroup, *cgroup_id).mode = *mode;
    }
    for (cgroup_id, vip) in &policy.allowed {
        entry(&mut by_cgroup, *cgroup_id).allowed.push(*vip);
    }
    for ((cgroup_id, port, protocol), (vip, vip_port)) in &policy.overlays {
        let frontend = Frontend { vip: *vip, port: *vip_port, protocol: *protocol };
        entry(&mut by_cgroup, *cgroup_id).overlays.push(DumpedOverlay { port: *port, protocol: *protocol, frontend });
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
    } else {
        print!("{}", render_table(&dump, pin_dir));
    }
    Ok(())
}

/// The dump as `maps dump` prints it without `--json`: services, then container policy
/// and the backstop when there are any.
fn render_table(dump: &Dump, pin_dir: &Path) -> String {
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
        table.add_row([
            s.name.clone(),
            format!("{}/{}", SocketAddr::new(s.vip, s.port), s.protocol),
            s.algorithm.name().into(),
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
    let mut text = format!("{table}\n");
    let _ =
        writeln!(text, "{} service(s) pinned at {} (layout {})", dump.services.len(), pin_dir.display(), dump.layout);
    if !dump.policy.is_empty() {
        let mut table = comfy_table::Table::new();
        table.load_preset(comfy_table::presets::NOTHING).set_header(["CGROUP", "MODE", "DECLARED VIPS", "OVERLAYS"]);
        for p in &dump.policy {
            let allowed: Vec<String> = p.allowed.iter().map(ToString::to_string).collect();
            let overlays: Vec<String> =
                p.overlays.iter().map(|o| format!("{}/{} -> {}", o.port, o.protocol, o.frontend)).collect();
            table.add_row([p.cgroup_id.to_string(), p.mode.name().into(), allowed.join(" "), overlays.join(" ")]);
        }
        let _ = writeln!(text, "\n{table}");
    }
    if let Some(scope) = &dump.container_scope {
        let _ = writeln!(
            text,
            "\ncontainers without an entry yet (cgroups below {}): {}; {} VIP connect(s) refused, {} audited",
            scope.parent_cgroup_id,
            scope.mode.name(),
            scope.refused,
            scope.audited
        );
    }
    text
}

/// `ip:port`, with its weight when above 1, its open connections when counted, and its
/// ejection while it lasts.
fn describe_backend(backend: &DumpedBackend) -> String {
    let mut text = backend.address.map_or_else(|| "(missing)".to_owned(), |address| address.to_string());
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn backend(address: Option<&str>, weight: u16, active: u64) -> DumpedBackend {
        DumpedBackend {
            address: address.map(|a| a.parse().unwrap()),
            weight,
            connects: 9,
            active,
            ejected_for_ms: None,
            consecutive_failures: 0,
            failures: 0,
            ejections: 0,
            skipped: 0,
        }
    }

    fn service(name: &str, vip: &str, protocol: KeyProtocol, backend_stats: Vec<DumpedBackend>) -> DumpedService {
        DumpedService {
            name: name.into(),
            vip: vip.parse().unwrap(),
            port: 80,
            protocol,
            algorithm: Algorithm::LeastConn,
            service_id: 7,
            affinity_seconds: 0,
            backends: backend_stats.iter().map(|b| b.address).collect(),
            slots: backend_stats.iter().map(|b| usize::from(b.weight)).sum(),
            backend_stats,
            outlier: OutlierDetection::default().into(),
            stats: DumpedStats { redirected: 5, refused_no_backend: 1, refused_by_policy: 2 },
        }
    }

    fn dump() -> Dump {
        let vip: IpAddr = "240.0.0.10".parse().unwrap();
        Dump {
            layout: 2,
            services: vec![
                service(
                    "web",
                    "240.0.0.10",
                    KeyProtocol::Served(Protocol::Tcp),
                    vec![backend(Some("127.0.0.1:8080"), 2, 3), backend(None, 1, 0)],
                ),
                service("sctp", "fd00::10", KeyProtocol::Other(132), Vec::new()),
            ],
            policy: vec![DumpedPolicy {
                cgroup_id: 42,
                mode: PolicyMode::Enforce,
                allowed: vec![vip],
                overlays: vec![DumpedOverlay {
                    port: 8080,
                    protocol: Protocol::Tcp,
                    frontend: Frontend { vip, port: 80, protocol: Protocol::Tcp },
                }],
            }],
            container_scope: Some(DumpedScope {
                parent_cgroup_id: 9,
                parent_level: 2,
                mode: PolicyMode::Audit,
                refused: 0,
                audited: 4,
            }),
        }
    }

    #[test]
    fn json_keeps_names_and_numbers_as_they_are() {
        let json = serde_json::to_value(dump()).unwrap();
        let web = &json["services"][0];
        assert_eq!(web["vip"], "240.0.0.10");
        assert_eq!(web["port"], 80);
        assert_eq!(web["protocol"], "tcp");
        assert_eq!(web["algorithm"], "least_conn");
        assert_eq!(web["backends"], json!(["127.0.0.1:8080", null]));
        assert_eq!(web["backend_stats"][0]["address"], "127.0.0.1:8080");
        assert_eq!(web["backend_stats"][0]["weight"], 2);
        assert_eq!(web["slots"], 3);
        assert_eq!(web["stats"]["refused_by_policy"], 2);
        assert_eq!(json["services"][1]["vip"], "fd00::10");
        assert_eq!(json["services"][1]["protocol"], 132);
        assert_eq!(
            json["policy"],
            json!([{
                "cgroup_id": 42,
                "mode": "enforce",
                "allowed": ["240.0.0.10"],
                "overlays": [{ "port": 8080, "protocol": "tcp", "frontend": "240.0.0.10:80/tcp" }],
            }])
        );
        assert_eq!(json["container_scope"]["mode"], "audit");
    }

    #[test]
    fn table_shows_the_same_view() {
        let table = render_table(&dump(), Path::new("/sys/fs/bpf/viking"));
        // Columns are padded to their widest cell; compare the cells.
        let rows: Vec<String> =
            table.lines().map(|line| line.split_whitespace().collect::<Vec<_>>().join(" ")).collect();
        let expected = [
            "NAME FRONTEND ALGORITHM BACKENDS REDIRECTED REFUSED",
            "web 240.0.0.10:80/tcp least_conn 127.0.0.1:8080 x2 (3 open) (missing) 5 3",
            "sctp [fd00::10]:80/132 least_conn (none: connects refused) 5 3",
            "2 service(s) pinned at /sys/fs/bpf/viking (layout 2)",
            "",
            "CGROUP MODE DECLARED VIPS OVERLAYS",
            "42 enforce 240.0.0.10 8080/tcp -> 240.0.0.10:80/tcp",
            "",
            "containers without an entry yet (cgroups below 9): audit; 0 VIP connect(s) refused, 4 audited",
        ];
        assert_eq!(rows, expected, "{table}");
    }
}
