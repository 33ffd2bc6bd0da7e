//! Checking one `[[service]]` table at a time.

use std::{
    fmt,
    net::{IpAddr, SocketAddr},
};

use viking_common::Algorithm;

use super::AgentSettings;
use crate::model::{
    BackendError, BackendSpec, Clash, DesiredState, Frontend, Limits, NameError, NameVipClaims, Named,
    OutlierDetection, OutlierError, Protocol, Service, ServiceName, UnknownName, VipRanges, check_backend_of,
    check_service_name,
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
    pub reason: FieldError,
    /// Whether only this backend was left out (the service itself was applied).
    pub backend_only: bool,
}

impl std::error::Error for ServiceError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.reason)
    }
}

/// What is wrong with the value of a field of a `[[service]]` table.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    /// A key the table does not have.
    #[error("unknown key; known keys: {}", .known.join(", "))]
    UnknownKey {
        /// The keys it has.
        known: &'static [&'static str],
    },
    /// A required key is absent.
    #[error("required")]
    Missing,
    /// Not a TOML string.
    #[error("must be a string")]
    NotAString,
    /// Not a TOML integer.
    #[error("must be an integer")]
    NotAnInteger,
    /// Not a TOML array.
    #[error("must be an array")]
    NotAnArray,
    /// `outlier` is not a table.
    #[error("must be a table, e.g. {{ consecutive_failures = 3, ejection_seconds = 10 }}")]
    NotAnOutlierTable,
    /// A `backends` entry that is neither a string nor a table.
    #[error("must be \"ip:port\" or {{ address = \"ip:port\", weight = N }}")]
    NotABackend,
    /// The name cannot name a service.
    #[error(transparent)]
    Name(#[from] NameError),
    /// The VIP is not an IP address.
    #[error("not an IP address")]
    NotAnIp,
    /// The VIP is outside `agent.vip_ranges`.
    #[error("outside the VIP ranges ({0}); set agent.vip_ranges")]
    OutsideVipRanges(VipRanges),
    /// The port is 0 or above 65535.
    #[error("must be 1..=65535")]
    Port,
    /// A protocol or algorithm of another name.
    #[error(transparent)]
    Unknown(#[from] UnknownName),
    /// `affinity_seconds` is out of range.
    #[error("must be 0..={MAX_AFFINITY_SECONDS}")]
    Affinity,
    /// An `outlier` setting is out of range, unknown, or disagrees with another.
    #[error(transparent)]
    Outlier(#[from] OutlierError),
    /// The VIP is the ambassador address of port overlays.
    #[error("is docker.ambassador, the address of port overlays")]
    Ambassador,
    /// An earlier service of the file has the same frontend.
    #[error("duplicate frontend, already used by service {0:?}")]
    DuplicateFrontend(String),
    /// An earlier service of the file gives the name another VIP.
    #[error("service {name:?} already has VIP {vip}; one name has one VIP")]
    NameHasVip {
        /// The name.
        name: String,
        /// Its VIP.
        vip: IpAddr,
    },
    /// An earlier service of the file has the VIP under another name.
    #[error("VIP already belongs to service {0:?}")]
    VipHasName(String),
    /// More backends than a service may have.
    #[error("more than limits.max_backends_per_service = {0}")]
    TooManyBackends(u16),
    /// A backend that is not `ip:port`.
    #[error("not an `ip:port` address (IPv6: `[addr]:port`)")]
    NotAnAddress,
    /// A backend address that cannot be one.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// A backend listed before in the same service.
    #[error("listed twice")]
    ListedTwice,
    /// A weight out of range.
    #[error("weight {0} must be 1..={max}", max = BackendSpec::MAX_WEIGHT)]
    Weight(i64),
}

/// A refused field: its name, its value as written, and why.
type Refused = (String, String, FieldError);

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
    fn from_table(table: &toml::Table) -> Result<Self, Refused> {
        if let Some((key, value)) = table.iter().find(|(k, _)| !SERVICE_KEYS.contains(&k.as_str())) {
            return Err((key.clone(), value.to_string(), FieldError::UnknownKey { known: &SERVICE_KEYS }));
        }
        let string = |key: &str, required: bool| -> Result<Option<String>, Refused> {
            match table.get(key) {
                None if required => Err((key.into(), "(missing)".into(), FieldError::Missing)),
                None => Ok(None),
                Some(toml::Value::String(s)) => Ok(Some(s.clone())),
                Some(other) => Err((key.into(), other.to_string(), FieldError::NotAString)),
            }
        };
        let integer = |key: &str, required: bool| -> Result<Option<i64>, Refused> {
            match table.get(key) {
                None if required => Err((key.into(), "(missing)".into(), FieldError::Missing)),
                None => Ok(None),
                Some(toml::Value::Integer(n)) => Ok(Some(*n)),
                Some(other) => Err((key.into(), other.to_string(), FieldError::NotAnInteger)),
            }
        };
        let backends = match table.get("backends") {
            None => Vec::new(),
            Some(toml::Value::Array(items)) => {
                items.iter().enumerate().map(|(i, item)| RawBackend::from_value(i, item)).collect::<Result<_, _>>()?
            }
            Some(other) => return Err(("backends".into(), other.to_string(), FieldError::NotAnArray)),
        };
        let outlier = match table.get("outlier") {
            None => None,
            Some(toml::Value::Table(outlier)) => Some(outlier.clone()),
            Some(other) => {
                return Err(("outlier".into(), other.to_string(), FieldError::NotAnOutlierTable));
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
    fn from_value(index: usize, item: &toml::Value) -> Result<Self, Refused> {
        let field = format!("backends[{index}]");
        match item {
            toml::Value::String(address) => Ok(Self { address: address.clone(), weight: None }),
            toml::Value::Table(table) => {
                if let Some((key, value)) = table.iter().find(|(k, _)| !BACKEND_KEYS.contains(&k.as_str())) {
                    return Err((
                        format!("{field}.{key}"),
                        value.to_string(),
                        FieldError::UnknownKey { known: &BACKEND_KEYS },
                    ));
                }
                let address = match table.get("address") {
                    Some(toml::Value::String(address)) => address.clone(),
                    Some(other) => {
                        return Err((format!("{field}.address"), other.to_string(), FieldError::NotAString));
                    }
                    None => return Err((format!("{field}.address"), "(missing)".into(), FieldError::Missing)),
                };
                let weight = match table.get("weight") {
                    None => None,
                    Some(toml::Value::Integer(weight)) => Some(*weight),
                    Some(other) => {
                        return Err((format!("{field}.weight"), other.to_string(), FieldError::NotAnInteger));
                    }
                };
                Ok(Self { address, weight })
            }
            other => Err((field, other.to_string(), FieldError::NotABackend)),
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
    let mut claims: NameVipClaims<ServiceName> = NameVipClaims::default();

    for (index, table) in tables.into_iter().enumerate() {
        let name = table.get("name").and_then(|v| v.as_str()).map(str::to_owned);
        let fail = |field: &str, value: String, reason: FieldError| ServiceError {
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
        let (service, backend_errors) = match check_service(raw, agent, limits) {
            Ok(checked) => checked,
            Err((field, value, reason)) => {
                errors.push(fail(&field, value, reason));
                continue;
            }
        };
        let frontend = service.frontend;
        let vip_text = || format!("{:?}", frontend.vip.to_string());
        if Some(frontend.vip) == reserved {
            errors.push(fail("vip", vip_text(), FieldError::Ambassador));
            continue;
        }
        if let Some(existing) = state.services.get(&frontend) {
            errors.push(fail("vip", frontend.to_string(), FieldError::DuplicateFrontend(existing.name.to_string())));
            continue;
        }
        if let Err(clash) = claims.check(&service.name, frontend.vip) {
            let reason = match clash {
                Clash::NameHasVip(vip) => FieldError::NameHasVip { name: service.name.to_string(), vip },
                Clash::VipHasName(other) => FieldError::VipHasName(other),
            };
            errors.push(fail("vip", vip_text(), reason));
            continue;
        }
        errors.extend(
            backend_errors
                .into_iter()
                .map(|(field, value, reason)| ServiceError { backend_only: true, ..fail(&field, value, reason) }),
        );
        claims.claim(service.name.clone(), frontend.vip);
        state.insert(service);
    }
    (state, errors)
}

/// Checks one service; returns it with its refused backends, or why it is refused.
fn check_service(raw: RawService, agent: &AgentSettings, limits: &Limits) -> Result<(Service, Vec<Refused>), Refused> {
    let fail = |field: &str, value: String, reason: FieldError| (field.to_owned(), value, reason);
    check_service_name(&raw.name).map_err(|err| fail("name", format!("{:?}", raw.name), err.into()))?;
    // v4-mapped IPv6 (::ffff:a.b.c.d) is the IPv4 address, as in the kernel's keys.
    let vip: IpAddr = raw
        .vip
        .parse::<IpAddr>()
        .map(|ip| ip.to_canonical())
        .map_err(|_| fail("vip", format!("{:?}", raw.vip), FieldError::NotAnIp))?;
    if !agent.vip_ranges.contains(vip) {
        return Err(fail("vip", format!("{:?}", raw.vip), FieldError::OutsideVipRanges(agent.vip_ranges.clone())));
    }
    let port = u16::try_from(raw.port)
        .ok()
        .filter(|port| *port != 0)
        .ok_or_else(|| fail("port", raw.port.to_string(), FieldError::Port))?;
    let written = |text: &Option<String>| format!("{:?}", text.as_deref().unwrap_or_default());
    let protocol = Protocol::parse_or_default(raw.protocol.as_deref())
        .map_err(|err| fail("protocol", written(&raw.protocol), err.into()))?;
    let algorithm = Algorithm::parse_or_default(raw.algorithm.as_deref())
        .map_err(|err| fail("algorithm", written(&raw.algorithm), err.into()))?;
    let affinity_secs = match raw.affinity_seconds {
        None => 0,
        Some(secs) if (0..=MAX_AFFINITY_SECONDS).contains(&secs) => secs as u32,
        Some(secs) => return Err(fail("affinity_seconds", secs.to_string(), FieldError::Affinity)),
    };
    let outlier = check_outlier(raw.outlier.as_ref())?;

    let mut backends: Vec<BackendSpec> = Vec::new();
    let mut backend_errors = Vec::new();
    for (i, raw_backend) in raw.backends.iter().enumerate() {
        let text = &raw_backend.address;
        let checked = check_backend(text, vip, &agent.vip_ranges).and_then(|addr| {
            if backends.iter().any(|b| b.addr == addr) {
                return Err(FieldError::ListedTwice);
            }
            let weight = match raw_backend.weight {
                None => 1,
                Some(w) if (1..=i64::from(BackendSpec::MAX_WEIGHT)).contains(&w) => w as u16,
                Some(w) => return Err(FieldError::Weight(w)),
            };
            Ok(BackendSpec { addr, weight })
        });
        match checked {
            Ok(backend) => backends.push(backend),
            Err(reason) => backend_errors.push(fail(&format!("backends[{i}]"), format!("{text:?}"), reason)),
        }
    }
    if backends.len() > usize::from(limits.max_backends_per_service) {
        return Err(fail(
            "backends",
            format!("{} entries", backends.len()),
            FieldError::TooManyBackends(limits.max_backends_per_service),
        ));
    }
    let service = Service {
        name: raw.name.into(),
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
fn check_outlier(table: Option<&toml::Table>) -> Result<OutlierDetection, Refused> {
    let mut outlier = OutlierDetection::default();
    for (key, value) in table.into_iter().flatten() {
        let field = format!("outlier.{key}");
        let number = value.as_integer().ok_or_else(|| (field.clone(), value.to_string(), FieldError::NotAnInteger));
        outlier.set(key, number?).map_err(|err| (field, value.to_string(), err.into()))?;
    }
    outlier.check().map_err(|err| {
        let value = table.and_then(|t| t.get(&err.key)).map_or_else(|| "(default)".into(), ToString::to_string);
        (format!("outlier.{}", err.key), value, err.into())
    })
}

/// A backend entry: `ip:port` (v4-mapped IPv6 is IPv4), usable as a backend of `vip`.
fn check_backend(text: &str, vip: IpAddr, vip_ranges: &VipRanges) -> Result<SocketAddr, FieldError> {
    let addr: SocketAddr = text
        .parse::<SocketAddr>()
        .map(|a| SocketAddr::new(a.ip().to_canonical(), a.port()))
        .map_err(|_| FieldError::NotAnAddress)?;
    check_backend_of(addr, vip, vip_ranges)?;
    Ok(addr)
}
