//! `viking-agent monitor`: prints the kernel's connect decisions as they happen (like
//! `cilium monitor`). It switches reporting on in the kernel (`MONITOR`) while it runs and
//! off when it ends; the connect path costs one array read when nobody watches.

use std::{
    collections::HashMap,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::Context as _;
use aya::maps::{Array, HashMap as BpfHashMap, Map, MapData, RingBuf};
use serde::Serialize;
use viking_common::{
    ConnectEvent, IPPROTO_TCP, MonitorSettings, ServiceKey, ServiceName, ServiceValue, Verdict, names,
};

use crate::dataplane::pins::PinDir;

/// Options of `monitor`.
#[derive(Clone, Debug)]
pub struct MonitorOptions {
    /// Only connects to this service.
    pub service: Option<String>,
    /// JSON lines instead of text.
    pub json: bool,
    /// Report one connect in this many (1 = all).
    pub sample_every: u32,
    /// Stop after this many printed events.
    pub count: Option<u64>,
}

/// One printed decision.
#[derive(Debug, Serialize)]
struct Decision {
    service: Option<String>,
    frontend: String,
    verdict: &'static str,
    backend: Option<String>,
    cgroup_id: u64,
}

/// Watches until Ctrl-C, SIGTERM or `count` events.
pub fn monitor(pin_dir: &Path, options: &MonitorOptions) -> anyhow::Result<()> {
    let pins = PinDir::new(pin_dir);
    let open = |name: &'static str| {
        MapData::from_pin(pins.map(name))
            .with_context(|| format!("opening {name} under {} (is Viking installed there?)", pin_dir.display()))
    };
    let mut settings: Array<MapData, MonitorSettings> = Map::Array(open(names::MONITOR)?).try_into()?;
    let mut ring: RingBuf<MapData> = Map::RingBuf(open(names::CONNECT_EVENTS)?).try_into()?;
    let services: BpfHashMap<MapData, ServiceKey, ServiceValue> = Map::HashMap(open(names::SERVICES)?).try_into()?;
    let service_names: BpfHashMap<MapData, u32, ServiceName> = Map::HashMap(open(names::SERVICE_NAMES)?).try_into()?;

    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = Arc::clone(&stop);
        ctrlc::set_handler(move || stop.store(true, Ordering::Relaxed)).context("installing the signal handler")?;
    }
    // Old records (from an earlier monitor that did not drain) are not news.
    while ring.next().is_some() {}
    settings.set(0, MonitorSettings { sample_every: options.sample_every.max(1), _pad: 0 }, 0)?;
    eprintln!("monitor: watching connects (one in {}); Ctrl-C stops", options.sample_every.max(1));
    let mut names_cache: HashMap<ServiceKey, Option<String>> = HashMap::new();
    let mut printed = 0u64;
    let result = (|| -> anyhow::Result<()> {
        while !stop.load(Ordering::Relaxed) && options.count.is_none_or(|count| printed < count) {
            let Some(record) = ring.next() else {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            };
            let Some(event) = decode(&record) else { continue };
            drop(record);
            let key = ServiceKey::new(event.vip, event.port_be, event.protocol, 0);
            let service = names_cache
                .entry(key)
                .or_insert_with(|| {
                    let entry = services.get(&key, 0).ok()?;
                    service_names.get(&entry.service_id, 0).ok().map(|n| n.as_str().to_owned())
                })
                .clone();
            if options.service.as_ref().is_some_and(|wanted| service.as_ref() != Some(wanted)) {
                continue;
            }
            let decision = describe(&event, service);
            if options.json {
                println!("{}", serde_json::to_string(&decision)?);
            } else {
                let target = decision.backend.as_deref().map_or(String::new(), |b| format!(" -> {b}"));
                let name = decision.service.as_deref().unwrap_or("?");
                println!(
                    "cgroup {} connect {} ({name}): {}{target}",
                    decision.cgroup_id, decision.frontend, decision.verdict
                );
            }
            printed += 1;
        }
        Ok(())
    })();
    // Off again whatever happened, so the connect path stops reporting.
    settings.set(0, MonitorSettings::default(), 0)?;
    result
}

fn describe(event: &ConnectEvent, service: Option<String>) -> Decision {
    let protocol = if event.protocol == IPPROTO_TCP { "tcp" } else { "udp" };
    let frontend = format!("{}/{protocol}", std::net::SocketAddr::new(event.vip.to_ip(), u16::from_be(event.port_be)));
    let verdict = Verdict::from_u8(event.verdict);
    let backend = (verdict == Some(Verdict::Redirected))
        .then(|| std::net::SocketAddr::new(event.backend.to_ip(), u16::from_be(event.backend_port_be)).to_string());
    Decision {
        service,
        frontend,
        verdict: verdict.map_or("unknown", Verdict::name),
        backend,
        cgroup_id: event.cgroup_id,
    }
}

/// Copies a record into a [`ConnectEvent`]; `None` for a record shorter than one.
fn decode(bytes: &[u8]) -> Option<ConnectEvent> {
    if bytes.len() < size_of::<ConnectEvent>() {
        return None;
    }
    // SAFETY: ConnectEvent is plain old data of integers; the slice holds at least that many
    // bytes; read_unaligned does not require alignment.
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<ConnectEvent>()) })
}
