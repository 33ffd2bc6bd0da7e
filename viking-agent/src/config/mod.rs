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

use std::path::Path;

use serde::Deserialize;

use crate::model::{DesiredState, LimitError, Limits, UnknownName, VipRanges};
pub use consul::{ConsulSection, ConsulSettings};
pub use dns::{DnsSettings, DomainError};
pub use docker::{DockerSettings, LabelRule, Trusted};
pub use metrics::{DEFAULT_METRICS_LISTEN, MetricsSettings};
pub use service::{FieldError, ServiceError};

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
    pub dns: Option<DnsSettings>,
    /// The metrics and health endpoint (on by default).
    pub metrics: MetricsSettings,
    /// The valid services of the file.
    pub services: DesiredState,
}

/// `[agent]`: settings of the agent itself.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentSettings {
    /// Address ranges VIPs must come from. A backend inside one of them is refused: a VIP
    /// can never be a backend.
    pub vip_ranges: VipRanges,
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
    /// `[limits]` value type. The message names the key and line.
    #[error("invalid config: {0}")]
    Syntax(#[from] toml::de::Error),
    /// A `[limits]` value the maps cannot be created with.
    #[error("invalid config: {0}")]
    Limit(#[from] LimitError),
    /// A setting has a value it cannot have.
    #[error("invalid config: {0}")]
    Value(#[from] SettingError),
}

/// A setting of `[agent]`, `[consul]`, `[docker]`, `[dns]` or `[metrics]` with a value it
/// cannot have.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{field}` = {value}: {reason}")]
pub struct SettingError {
    /// The setting, e.g. `consul.wait_seconds`.
    pub field: &'static str,
    /// Its value as written.
    pub value: String,
    /// What is wrong.
    pub reason: SettingProblem,
}

impl SettingError {
    /// `field` = `value` refused for `reason`.
    fn new(field: &'static str, value: impl Into<String>, reason: SettingProblem) -> Self {
        Self { field, value: value.into(), reason }
    }
}

/// What is wrong with a setting's value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SettingProblem {
    /// An empty list where one entry is needed at least.
    #[error("at least one {0} is needed")]
    Empty(&'static str),
    /// An address or range outside `agent.vip_ranges`.
    #[error("must lie inside agent.vip_ranges ({0})")]
    OutsideVipRanges(VipRanges),
    /// A number out of range.
    #[error("must be {min}..={max}")]
    Range {
        /// The smallest accepted value.
        min: u64,
        /// The largest accepted value.
        max: u64,
    },
    /// A name of none of the accepted values.
    #[error(transparent)]
    Unknown(#[from] UnknownName),
    /// Consul's address is neither `host:port` nor a URL.
    #[error("not host:port or a URL")]
    ConsulAddress,
    /// One of a client certificate and key without the other.
    #[error("required when {0} is set")]
    RequiredWith(&'static str),
    /// A KV prefix that is empty or has a `/` at an end.
    #[error("must be non-empty, without leading or trailing '/'")]
    KvPrefix,
    /// Docker's host is not a unix socket.
    #[error("only unix:///path sockets are supported")]
    NotAUnixSocket,
    /// A cgroup parent that is not a path below the cgroup2 root.
    #[error("must be a cgroup path below the cgroup2 root, such as \"/docker\"")]
    CgroupPath,
    /// A trusted name that is empty or has surrounding spaces.
    #[error("must be a non-empty name without surrounding spaces")]
    TrustedName,
    /// A listen address with port 0.
    #[error("port 0 is not a fixed port")]
    PortZero,
    /// A listen address given twice.
    #[error("listed twice")]
    ListedTwice,
    /// A DNS domain that is not a host name or too long.
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// The metrics listen address is neither `ip:port` nor `off`.
    #[error("must be \"ip:port\" or \"off\"")]
    MetricsListen,
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
        raw.limits.check()?;
        let vip_ranges = &raw.agent.vip_ranges;
        if vip_ranges.is_empty() {
            return Err(SettingError::new("agent.vip_ranges", "[]", SettingProblem::Empty("range")).into());
        }
        let outside = |field, value: String| {
            SettingError::new(field, value, SettingProblem::OutsideVipRanges(vip_ranges.clone()))
        };
        let consul = match &raw.consul {
            None => None,
            Some(section) => {
                let settings = section.resolve(|key| std::env::var(key).ok())?;
                if !vip_ranges.contains_net(&settings.vip_range) {
                    return Err(outside("consul.vip_range", settings.vip_range.to_string()).into());
                }
                Some(settings)
            }
        };
        let docker = match &raw.docker {
            None => None,
            Some(section) => {
                let settings = section.resolve(|key| std::env::var(key).ok())?;
                if !vip_ranges.contains(settings.ambassador) {
                    return Err(outside("docker.ambassador", settings.ambassador.to_string()).into());
                }
                Some(settings)
            }
        };
        let dns = raw.dns.as_ref().map(dns::DnsSection::resolve).transpose()?;
        let metrics = raw.metrics.resolve()?;
        let reserved = docker.as_ref().map(|d| d.ambassador);
        let (services, errors) = service::parse_services(raw.service, &raw.agent, &raw.limits, reserved);
        let config = Config { agent: raw.agent, limits: raw.limits, consul, docker, dns, metrics, services };
        Ok(Parsed { config, errors })
    }
}

#[cfg(test)]
mod tests;
