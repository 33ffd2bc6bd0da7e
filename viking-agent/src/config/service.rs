//! Checking one `[[service]]` table at a time.

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    net::{IpAddr, SocketAddr},
};

use viking_common::Algorithm;

use super::AgentSettings;
use crate::model::{
    BackendSpec, DesiredState, Frontend, Limits, OutlierDetection, Protocol, Service, UnknownName, parse_algorithm,
};

/// A service (or one of its backends) that was left out, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceError {
    /// Position of the `[[service]]` table in the file, from 0.
    pub index: usize,
    /// The service's name, when it has a usable one.
    pub name: Option<String>,
    /// The field at fault, e.g. `vip` or `backends[2]`.
    pub field: String,
    /// The value as written.
    pub value: String,
    /// What is wrong with it.
    pub reason: String,
    /// Whether only this backend was left out (the service itself was applied).
    pub backend_only: bool,
}

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "service[{}]", self.index)?;
        if let Some(name) = &self.name {
            write!(f, " {name:?}")?;
        }
        write!(f, ": `{}` = {}: {}", self.field, self.value, self.reason)?;
        f.write_str(if self.backend_only { " (backend skipped)" } else { " (service skipped)" })
    }
}

/// The fields of a `[[service]]` table, with their TOML types checked.
struct RawService {
    name: String,
    vip: String,
    port: i64,
    protocol: Option<String>,
    algorithm: Option<String>,
    affinity_seconds: Option<i64>,
    outlier: Option<toml::Table>,
    backends: Vec<RawBackend>,
}

/// A `backends` entry: `"ip:port"` or `{ address = "ip:port", weight = 3 }`.
struct RawBackend {
    address: String,
    weight: Option<i64>,
}

const SERVICE_KEYS: [&str; 8] =
    ["name", "vip", "port", "protocol", "algorithm", "affinity_seconds", "outlier", "backends"];
const BACKEND_KEYS: [&str; 2] = ["address", "weight"];
/// Longest client affinity window accepted (a day).
const MAX_AFFINITY_SECONDS: i64 = 86_400;

impl RawService {
    /// Reads the table by hand (rather than through serde) so that every error names the
    /// exact key and value.
    fn from_table(table: &toml::Table) -> Result<Self, (String, String, String)> {
        if let Some((key, value)) = table.iter().find(|(k, _)| !SERVICE_KEYS.contains(&k.as_str())) {
            return Err((
                key.clone(),
                value.to_string(),
                format!("unknown key; known keys: {}", SERVICE_KEYS.join(", ")),
            ));
        }
        let string = |key: &str, required: bool| -> Result<Option<String>, (String, String, String)> {
            match table.get(key) {
                None if required => Err((key.into(), "(missing)".into(), "required".into())),
                None => Ok(None),
                Some(toml::Value::String(s)) => Ok(Some(s.clone())),
                Some(other) => Err((key.into(), other.to_string(), "must be a string".into())),
            }
        };
        let integer = |key: &str, required: bool| -> Result<Option<i64>, (String, String, String)> {
            match table.get(key) {
                None if required => Err((key.into(), "(missing)".into(), "required".into())),
                None => Ok(None),
                Some(toml::Value::Integer(n)) => Ok(Some(*n)),
                Some(other) => Err((key.into(), other.to_string(), "must be an integer".into())),
            }
        };
        let backends = match table.get("backends") {
            None => Vec::new(),
            Some(toml::Value::Array(items)) => {
                items.iter().enumerate().map(|(i, item)| RawBackend::from_value(i, item)).collect::<Result<_, _>>()?
            }
            Some(other) => return Err(("backends".into(), other.to_string(), "must be an array".into())),
        };
        let outlier = match table.get("outlier") {
            None => None,
            Some(toml::Value::Table(outlier)) => Some(outlier.clone()),
            Some(other) => {
                return Err((
                    "outlier".into(),
                    other.to_string(),
                    "must be a table, e.g. { consecutive_failures = 3, ejection_seconds = 10 }".into(),
                ));
            }
        };
        Ok(Self {
            name: string("name", true)?.unwrap_or_default(),
            vip: string("vip", true)?.unwrap_or_default(),
            port: integer("port", true)?.unwrap_or_default(),
            protocol: string("protocol", false)?,
            algorithm: string("algorithm", false)?,
            affinity_seconds: integer("affinity_seconds", false)?,
            outlier,
            backends,
        })
    }
}

impl RawBackend {
    fn from_value(index: usize, item: &toml::Value) -> Result<Self, (String, String, String)> {
        let field = format!("backends[{index}]");
        match item {
            toml::Value::String(address) => Ok(Self { address: address.clone(), weight: None }),
            toml::Value::Table(table) => {
                if let Some((key, value)) = table.iter().find(|(k, _)| !BACKEND_KEYS.contains(&k.as_str())) {
                    return Err((
                        format!("{field}.{key}"),
                        value.to_string(),
                        "unknown key; known keys: address, weight".into(),
                    ));
                }
                let address = match table.get("address") {
                    Some(toml::Value::String(address)) => address.clone(),
                    Some(other) => {
                        return Err((format!("{field}.address"), other.to_string(), "must be a string".into()));
                    }
                    None => return Err((format!("{field}.address"), "(missing)".into(), "required".into())),
                };
                let weight = match table.get("weight") {
                    None => None,
                    Some(toml::Value::Integer(weight)) => Some(*weight),
                    Some(other) => {
                        return Err((format!("{field}.weight"), other.to_string(), "must be an integer".into()));
                    }
                };
                Ok(Self { address, weight })
            }
            other => {
                Err((field, other.to_string(), "must be \"ip:port\" or { address = \"ip:port\", weight = N }".into()))
            }
        }
    }
}

/// Checks every service table; returns the valid services and the errors.
/// `reserved` is the ambassador address of port overlays, which no service may use.
pub(super) fn parse_services(
    tables: Vec<toml::Table>,
    agent: &AgentSettings,
    limits: &Limits,
    reserved: Option<IpAddr>,
) -> (DesiredState, Vec<ServiceError>) {
    let mut state = DesiredState::default();
    let mut errors = Vec::new();
    // Name <-> VIP must be one-to-one: a name is resolved (DNS, env vars) to one VIP.
    let mut vip_of_name: HashMap<String, IpAddr> = HashMap::new();
    let mut name_of_vip: BTreeMap<IpAddr, String> = BTreeMap::new();

    for (index, table) in tables.into_iter().enumerate() {
        let name = table.get("name").and_then(|v| v.as_str()).map(str::to_owned);
        let fail = |field: &str, value: String, reason: String| ServiceError {
            index,
            name: name.clone(),
            field: field.to_owned(),
            value,
            reason,
            backend_only: false,
        };
        let raw = match RawService::from_table(&table) {
            Ok(raw) => raw,
            Err((field, value, reason)) => {
                errors.push(fail(&field, value, reason));
                continue;
            }
        };
        let (service, backend_errors) = match check_service(index, raw, agent, limits) {
            Ok(checked) => checked,
            Err(err) => {
                errors.push(err);
                continue;
            }
        };
        let frontend = service.frontend;
        if Some(frontend.vip) == reserved {
            errors.push(fail(
                "vip",
                format!("{:?}", frontend.vip.to_string()),
                "is docker.ambassador, the address of port overlays".into(),
            ));
            continue;
        }
        if let Some(existing) = state.services.get(&frontend) {
            errors.push(fail(
                "vip",
                format!("{frontend}"),
                format!("duplicate frontend, already used by service {:?}", existing.name),
            ));
            continue;
        }
        if let Some(vip) = vip_of_name.get(&service.name).filter(|vip| **vip != frontend.vip) {
            errors.push(fail(
                "vip",
                format!("{:?}", frontend.vip.to_string()),
                format!("service {:?} already has VIP {vip}; one name has one VIP", service.name),
            ));
            continue;
        }
        if let Some(other) = name_of_vip.get(&frontend.vip).filter(|n| **n != service.name) {
            errors.push(fail(
                "vip",
                format!("{:?}", frontend.vip.to_string()),
                format!("VIP already belongs to service {other:?}"),
            ));
            continue;
        }
        errors.extend(backend_errors);
        vip_of_name.insert(service.name.clone(), frontend.vip);
        name_of_vip.insert(frontend.vip, service.name.clone());
        state.insert(service);
    }
    (state, errors)
}

fn check_service(
    index: usize,
    raw: RawService,
    agent: &AgentSettings,
    limits: &Limits,
) -> Result<(Service, Vec<ServiceError>), ServiceError> {
    let fail = |field: &str, value: String, reason: String| ServiceError {
        index,
        name: Some(raw.name.clone()),
        field: field.to_owned(),
        value,
        reason,
        backend_only: false,
    };
    if let Err(reason) = check_name(&raw.name) {
        return Err(fail("name", format!("{:?}", raw.name), reason.into()));
    }
    // v4-mapped IPv6 (::ffff:a.b.c.d) is the IPv4 address, as in the kernel's keys.
    let vip: IpAddr = raw
        .vip
        .parse::<IpAddr>()
        .map(|ip| ip.to_canonical())
        .map_err(|_| fail("vip", format!("{:?}", raw.vip), "not an IP address".into()))?;
    if !agent.is_vip_range(vip) {
        return Err(fail(
            "vip",
            format!("{:?}", raw.vip),
            format!("outside the VIP ranges ({}); set agent.vip_ranges", agent.ranges_text()),
        ));
    }
    let port = u16::try_from(raw.port)
        .ok()
        .filter(|port| *port != 0)
        .ok_or_else(|| fail("port", raw.port.to_string(), "must be 1..=65535".into()))?;
    let protocol = match raw.protocol.as_deref() {
        None => Protocol::Tcp,
        Some(text) => text.parse().map_err(|e: UnknownName| fail("protocol", format!("{text:?}"), e.to_string()))?,
    };
    let algorithm = match raw.algorithm.as_deref() {
        None => Algorithm::RoundRobin,
        Some(name) => parse_algorithm(name).map_err(|e| fail("algorithm", format!("{name:?}"), e.to_string()))?,
    };
    let affinity_secs = match raw.affinity_seconds {
        None => 0,
        Some(secs) if (0..=MAX_AFFINITY_SECONDS).contains(&secs) => secs as u32,
        Some(secs) => {
            return Err(fail("affinity_seconds", secs.to_string(), format!("must be 0..={MAX_AFFINITY_SECONDS}")));
        }
    };
    let outlier = check_outlier(raw.outlier.as_ref()).map_err(|(field, value, reason)| fail(&field, value, reason))?;

    let mut backends: Vec<BackendSpec> = Vec::new();
    let mut backend_errors = Vec::new();
    for (i, raw_backend) in raw.backends.iter().enumerate() {
        let text = &raw_backend.address;
        let checked = check_backend(text, vip, agent).and_then(|addr| {
            if backends.iter().any(|b| b.addr == addr) {
                return Err("listed twice".to_owned());
            }
            let weight = match raw_backend.weight {
                None => 1,
                Some(w) if (1..=i64::from(BackendSpec::MAX_WEIGHT)).contains(&w) => w as u16,
                Some(w) => return Err(format!("weight {w} must be 1..={}", BackendSpec::MAX_WEIGHT)),
            };
            Ok(BackendSpec { addr, weight })
        });
        match checked {
            Ok(backend) => backends.push(backend),
            Err(reason) => backend_errors.push(ServiceError {
                backend_only: true,
                ..fail(&format!("backends[{i}]"), format!("{text:?}"), reason)
            }),
        }
    }
    if backends.len() > usize::from(limits.max_backends_per_service) {
        return Err(fail(
            "backends",
            format!("{} entries", backends.len()),
            format!("more than limits.max_backends_per_service = {}", limits.max_backends_per_service),
        ));
    }
    let service = Service {
        name: raw.name,
        frontend: Frontend { vip, port, protocol },
        algorithm,
        affinity_secs,
        outlier,
        backends,
    };
    Ok((service, backend_errors))
}

/// The `outlier` table of a service: every key an integer in its range (`model`'s checks,
/// shared with Consul meta); missing keys keep their defaults.
fn check_outlier(table: Option<&toml::Table>) -> Result<OutlierDetection, (String, String, String)> {
    let mut outlier = OutlierDetection::default();
    for (key, value) in table.into_iter().flatten() {
        let field = format!("outlier.{key}");
        let number = value.as_integer().ok_or_else(|| (field.clone(), value.to_string(), "must be an integer".into()));
        outlier.set(key, number?).map_err(|err| (field, value.to_string(), err.reason))?;
    }
    outlier.check().map_err(|err| {
        let value = table.and_then(|t| t.get(&err.key)).map_or_else(|| "(default)".into(), ToString::to_string);
        (format!("outlier.{}", err.key), value, err.reason)
    })
}

/// Service names are DNS labels: they become `<name>.service.viking` and env var prefixes.
pub(crate) fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > 63 {
        return Err("must be 1 to 63 characters");
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err("may only contain letters, digits, '-' and '_'");
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err("may not start or end with '-'");
    }
    Ok(())
}

/// A backend must be a usable unicast `ip:port` of the VIP's family, and never a VIP.
pub(crate) fn check_backend(text: &str, vip: IpAddr, agent: &AgentSettings) -> Result<SocketAddr, String> {
    let addr: SocketAddr = text
        .parse::<SocketAddr>()
        .map(|a| SocketAddr::new(a.ip().to_canonical(), a.port()))
        .map_err(|_| "not an `ip:port` address (IPv6: `[addr]:port`)".to_owned())?;
    check_backend_addr(addr, vip, agent)?;
    Ok(addr)
}

/// The checks on a backend address, shared by every source.
pub(crate) fn check_backend_addr(addr: SocketAddr, vip: IpAddr, agent: &AgentSettings) -> Result<(), String> {
    let ip = addr.ip();
    if addr.port() == 0 {
        return Err("port 0 is not a destination".into());
    }
    if ip.is_unspecified() || ip.is_multicast() || ip == IpAddr::from([255, 255, 255, 255]) {
        return Err("not a unicast address".into());
    }
    if agent.is_vip_range(ip) {
        return Err(format!("inside the VIP ranges ({}); a VIP cannot be a backend", agent.ranges_text()));
    }
    if ip.is_ipv4() != vip.is_ipv4() {
        return Err(format!("address family differs from the VIP {vip}"));
    }
    Ok(())
}
