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

use crate::model::{DesiredState, LimitError, Limits, VipRanges};
pub use consul::{ConsulSection, ConsulSettings, default_consul_vip_range};
pub use dns::DnsSettings;
pub use docker::{DEFAULT_AMBASSADOR, DockerSettings, LabelRule, Trusted};
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
        raw.limits.check()?;
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
                if !raw.agent.vip_ranges.contains_net(&settings.vip_range) {
                    return Err(ConfigError::Value {
                        field: "consul.vip_range",
                        value: settings.vip_range.to_string(),
                        reason: format!("must lie inside agent.vip_ranges ({})", raw.agent.vip_ranges),
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
                if !raw.agent.vip_ranges.contains(settings.ambassador) {
                    return Err(ConfigError::Value {
                        field: "docker.ambassador",
                        value: settings.ambassador.to_string(),
                        reason: format!("must lie inside agent.vip_ranges ({})", raw.agent.vip_ranges),
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

#[cfg(test)]
mod tests;
