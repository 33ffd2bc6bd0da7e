//! `viking-agent maps dump`: what the kernel holds, read from the pinned maps (not from any
//! agent's memory), so it works while the agent is stopped.

use std::path::Path;

use anyhow::Context as _;
use serde::Serialize;

use crate::{
    dataplane::{pins::PinDir, tables::KernelTables},
    model::Protocol,
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
    /// Backends in slot order.
    pub backends: Vec<String>,
    /// Counters summed over CPUs.
    pub stats: DumpedStats,
}

/// Per-service counters.
#[derive(Debug, Serialize)]
pub struct DumpedStats {
    /// Connects sent to a backend.
    pub redirected: u64,
    /// Connects refused for lack of a backend.
    pub refused_no_backend: u64,
}

/// The whole dump, as printed by `--json`.
#[derive(Debug, Serialize)]
pub struct Dump {
    /// Every service, by VIP, port and protocol.
    pub services: Vec<DumpedService>,
}

/// Reads the pinned maps under `pin_dir`.
pub fn read(pin_dir: &Path) -> anyhow::Result<Dump> {
    let tables = KernelTables::open_pinned(&PinDir::new(pin_dir))
        .with_context(|| format!("is Viking installed at {}? (`--pin-dir`)", pin_dir.display()))?;
    let snapshot = tables.snapshot()?;
    let mut services = Vec::new();
    for (key, service) in &snapshot.services {
        let stats = tables.stats(service.entry.service_id)?;
        services.push(DumpedService {
            name: service.name.clone(),
            vip: key.vip.to_ip().to_string(),
            port: key.port(),
            protocol: Protocol::from_number(key.protocol).map_or_else(|| key.protocol.to_string(), |p| p.name().into()),
            algorithm: viking_common::Algorithm::from_u8(service.entry.algorithm).name().into(),
            service_id: service.entry.service_id,
            backends: service
                .slots
                .iter()
                .map(|slot| match slot.and_then(|id| snapshot.backends.get(&id)) {
                    Some(addr) => addr.to_string(),
                    None => "(missing)".into(),
                })
                .collect(),
            stats: DumpedStats { redirected: stats.redirected, refused_no_backend: stats.refused_no_backend },
        });
    }
    Ok(Dump { services })
}

/// Prints the dump as a table or as JSON.
pub fn dump(pin_dir: &Path, json: bool) -> anyhow::Result<()> {
    let dump = read(pin_dir)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&dump)?);
        return Ok(());
    }
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::NOTHING).set_header([
        "NAME", "FRONTEND", "ALGORITHM", "BACKENDS", "REDIRECTED", "REFUSED",
    ]);
    for s in &dump.services {
        let vip = s.vip.parse::<std::net::IpAddr>().map(|ip| std::net::SocketAddr::new(ip, s.port).to_string());
        table.add_row([
            s.name.clone(),
            format!("{}/{}", vip.unwrap_or_else(|_| s.vip.clone()), s.protocol),
            s.algorithm.clone(),
            if s.backends.is_empty() { "(none: connects refused)".into() } else { s.backends.join(" ") },
            s.stats.redirected.to_string(),
            s.stats.refused_no_backend.to_string(),
        ]);
    }
    println!("{table}");
    println!("{} service(s) pinned at {}", dump.services.len(), pin_dir.display());
    Ok(())
}
