//! `viking-agent maps dump`: what the kernel holds, read from the pinned maps (not from any
//! agent's memory), so it works while the agent is stopped.
//!
//! The dump is a typed view of the maps ([`view`]); `--json` serializes it as it is, and the
//! table ([`table`]) is rendered from the same values. This file reads the maps into the view
//! and prints it.

mod table;
#[cfg(test)]
mod tests;
mod view;

use std::{collections::BTreeMap, path::Path};

use anyhow::Context as _;
use viking_common::Algorithm;

pub use self::view::{
    Dump, DumpedBackend, DumpedOutlier, DumpedOverlay, DumpedPolicy, DumpedScope, DumpedService, DumpedStats,
    KeyProtocol,
};
use crate::{
    dataplane::{
        pins::PinDir,
        tables::{KernelTables, MapSource},
    },
    model::{Frontend, OutlierDetection},
    policy::writer::PolicyTables,
};

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
        print!("{}", table::render_table(&dump, pin_dir));
    }
    Ok(())
}
