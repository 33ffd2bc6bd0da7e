//! The agent's TOML configuration: static services, VIP ranges, map limits.
//!
//! Parsing is two-level so that one bad service never takes the others down: the file as a
//! whole must be valid TOML with only known sections and keys, then each `[[service]]` is
//! checked on its own. A bad service is reported (naming the field and value) and left
//! out; a bad backend entry is reported and left out of its service.

mod consul;
mod dns;
mod docker;
mod metrics;
mod service;

use std::{fmt, net::IpAddr, path::Path};

use ipnet::IpNet;
use serde::Deserialize;
use viking_common::limits;

use crate::model::DesiredState;
pub use consul::{ConsulSection, ConsulSettings, default_consul_vip_range};
pub use docker::{DEFAULT_AMBASSADOR, DockerSettings, LabelRule, Trusted};
pub use metrics::{DEFAULT_METRICS_LISTEN, MetricsSettings};
pub use service::ServiceError;
pub(crate) use service::{check_backend_addr, check_name};

/// A parsed configuration file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// VIP ranges and other agent settings.
    pub agent: AgentSettings,
    /// Map sizes.
    pub limits: Limits,
    /// Consul, when a `[consul]` section is present.
    pub consul: Option<ConsulSettings>,
    /// Docker, when a `[docker]` section is present.
    pub docker: Option<DockerSettings>,
    /// The DNS responder, when a `[dns]` section is present.
    pub dns: Option<crate::dns::DnsSettings>,
    /// The metrics and health endpoint (on by default).
    pub metrics: MetricsSettings,
    /// The valid services of the file.
    pub services: DesiredState,
}

/// `[agent]`: settings of the agent itself.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentSettings {
    /// Address ranges VIPs must come from. A backend inside one of them is refused: a VIP
    /// can never be a backend.
    pub vip_ranges: Vec<IpNet>,
}

impl Default for AgentSettings {
    fn default() -> Self {
        Self { vip_ranges: vec![default_vip_range()] }
    }
}

impl AgentSettings {
    /// Whether `ip` is inside one of the VIP ranges.
    pub fn is_vip_range(&self, ip: IpAddr) -> bool {
        self.vip_ranges.iter().any(|range| range.contains(&ip))
    }

    /// The ranges as text, for error messages.
    pub fn ranges_text(&self) -> String {
        let ranges: Vec<String> = self.vip_ranges.iter().map(ToString::to_string).collect();
        ranges.join(", ")
    }
}

/// The default VIP range, 240.0.0.0/4: reserved, never routed, and where Consul's own
/// virtual IPs live.
pub fn default_vip_range() -> IpNet {
    IpNet::V4(ipnet::Ipv4Net::new(std::net::Ipv4Addr::new(240, 0, 0, 0), 4).expect("valid prefix"))
}

/// `[limits]`: sizes of the kernel maps, fixed when the maps are created. Changing them
/// takes effect when the pinned maps are recreated (`viking-agent uninstall`, then `run`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Frontends (`vip:port/protocol`) the kernel can hold.
    pub max_services: u32,
    /// Distinct backend addresses over all services.
    pub max_backends: u32,
    /// Backends one service may have.
    pub max_backends_per_service: u16,
    /// Entries of the service hash: one per service plus one per backend slot.
    pub max_service_slots: u32,
    /// Unconnected UDP flows (socket x backend) whose replies are translated back to the VIP.
    pub max_rev_nat: u32,
    /// Client affinity entries (client cgroup x service).
    pub max_affinity: u32,
    /// Recently redirected sockets whose VIP `getpeername` can show without the socket
    /// having asked before (a direct-mapped table of this many entries, 56 bytes each).
    pub max_recent_sockets: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_services: limits::MAX_SERVICES,
            max_backends: limits::MAX_BACKENDS,
            max_backends_per_service: limits::MAX_BACKENDS_PER_SERVICE,
            max_service_slots: limits::MAX_SERVICE_SLOTS,
            max_rev_nat: limits::MAX_REV_NAT,
            max_affinity: limits::MAX_AFFINITY,
            max_recent_sockets: limits::MAX_RECENT_SOCKETS,
        }
    }
}

/// Why a configuration file cannot be used at all. (A bad service is a [`ServiceError`]
/// instead, and does not stop the others.)
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML, or has an unknown section or key, or a bad `[agent]` or
    /// `[limits]` value. The message names the key and line.
    #[error("invalid config: {0}")]
    Syntax(#[from] toml::de::Error),
    /// A setting has a value outside its allowed range.
    #[error("invalid config: `{field}` = {value}: {reason}")]
    Value {
        /// The setting, e.g. `limits.max_services`.
        field: &'static str,
        /// Its value as written.
        value: String,
        /// What is wrong.
        reason: String,
    },
}

/// The result of parsing a file: the usable config and the services that were refused.
#[derive(Debug)]
pub struct Parsed {
    /// Everything valid in the file.
    pub config: Config,
    /// Services and backends left out, each naming its field and value.
    pub errors: Vec<ServiceError>,
}

/// The file's shape; services stay raw tables so each can fail on its own.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    agent: AgentSettings,
    #[serde(default)]
    limits: Limits,
    consul: Option<consul::ConsulSection>,
    docker: Option<docker::DockerSection>,
    dns: Option<dns::DnsSection>,
    #[serde(default)]
    metrics: metrics::MetricsSection,
    #[serde(default)]
    service: Vec<toml::Table>,
}

impl Config {
    /// Reads and parses a config file.
    pub fn load(path: &Path) -> Result<Parsed, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
        Self::parse(&text)
    }

    /// Parses config text.
    pub fn parse(text: &str) -> Result<Parsed, ConfigError> {
        let raw: RawConfig = toml::from_str(text)?;
        check_limits(&raw.limits)?;
        if raw.agent.vip_ranges.is_empty() {
            return Err(ConfigError::Value {
                field: "agent.vip_ranges",
                value: "[]".into(),
                reason: "at least one range is needed".into(),
            });
        }
        let consul = match &raw.consul {
            None => None,
            Some(section) => {
                let settings = section
                    .resolve(|key| std::env::var(key).ok())
                    .map_err(|(field, value, reason)| ConfigError::Value { field, value, reason })?;
                if !raw.agent.vip_ranges.iter().any(|range| range.contains(&settings.vip_range)) {
                    return Err(ConfigError::Value {
                        field: "consul.vip_range",
                        value: settings.vip_range.to_string(),
                        reason: format!("must lie inside agent.vip_ranges ({})", raw.agent.ranges_text()),
                    });
                }
                Some(settings)
            }
        };
        let docker = match &raw.docker {
            None => None,
            Some(section) => {
                let settings = section
                    .resolve(|key| std::env::var(key).ok())
                    .map_err(|(field, value, reason)| ConfigError::Value { field, value, reason })?;
                if !raw.agent.is_vip_range(settings.ambassador) {
                    return Err(ConfigError::Value {
                        field: "docker.ambassador",
                        value: settings.ambassador.to_string(),
                        reason: format!("must lie inside agent.vip_ranges ({})", raw.agent.ranges_text()),
                    });
                }
                Some(settings)
            }
        };
        let dns = raw
            .dns
            .as_ref()
            .map(dns::DnsSection::resolve)
            .transpose()
            .map_err(|(field, value, reason)| ConfigError::Value { field, value, reason })?;
        let metrics =
            raw.metrics.resolve().map_err(|(field, value, reason)| ConfigError::Value { field, value, reason })?;
        let reserved = docker.as_ref().map(|d| d.ambassador);
        let (services, errors) = service::parse_services(raw.service, &raw.agent, &raw.limits, reserved);
        let config = Config { agent: raw.agent, limits: raw.limits, consul, docker, dns, metrics, services };
        Ok(Parsed { config, errors })
    }
}

fn check_limits(limits: &Limits) -> Result<(), ConfigError> {
    let checks: [(&'static str, u64, u64, u64); 7] = [
        ("limits.max_services", limits.max_services.into(), 1, 1 << 24),
        ("limits.max_backends", limits.max_backends.into(), 1, 1 << 24),
        ("limits.max_backends_per_service", limits.max_backends_per_service.into(), 1, u16::MAX.into()),
        ("limits.max_service_slots", limits.max_service_slots.into(), 2, 1 << 26),
        ("limits.max_rev_nat", limits.max_rev_nat.into(), 1, 1 << 26),
        ("limits.max_affinity", limits.max_affinity.into(), 1, 1 << 24),
        ("limits.max_recent_sockets", limits.max_recent_sockets.into(), 1, 1 << 24),
    ];
    for (field, value, min, max) in checks {
        if !(min..=max).contains(&value) {
            return Err(ConfigError::Value {
                field,
                value: value.to_string(),
                reason: format!("out of range {min}..={max}"),
            });
        }
    }
    Ok(())
}

impl fmt::Display for Limits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "max_services={} max_backends={} max_backends_per_service={} max_service_slots={} max_rev_nat={} max_affinity={} max_recent_sockets={}",
            self.max_services,
            self.max_backends,
            self.max_backends_per_service,
            self.max_service_slots,
            self.max_rev_nat,
            self.max_affinity,
            self.max_recent_sockets
        )
    }
}

#[cfg(test)]
mod tests;
