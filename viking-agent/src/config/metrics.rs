//! `[metrics]`: the agent's HTTP endpoint for Prometheus and health checks. On by default,
//! on loopback; every key is optional:
//!
//! ```toml
//! [metrics]
//! listen = "127.0.0.1:9465"   # or "off"
//! per_backend = true          # per-backend series (connects, open, ejections)
//! max_services = 10000        # services with series of their own; the rest are summed
//! ```

use std::net::SocketAddr;

use serde::Deserialize;

use super::{SettingError, SettingProblem};

/// Default listen address: loopback, so only the host (a local Prometheus agent, Nomad's
/// check) reaches it until the operator chooses otherwise.
pub const DEFAULT_METRICS_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9465);
/// Default bound on the services with series of their own.
const DEFAULT_MAX_SERVICES: u32 = 10_000;
/// Largest accepted bound: a scrape must stay well below a Prometheus timeout.
const MAX_MAX_SERVICES: u32 = 100_000;

/// The `[metrics]` section as written.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    listen: Option<String>,
    per_backend: Option<bool>,
    max_services: Option<u32>,
}

/// The resolved `[metrics]` settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetricsSettings {
    /// Where `/metrics`, `/healthz` and `/readyz` are served; `None`: off.
    pub listen: Option<SocketAddr>,
    /// Whether per-backend series are exported.
    pub per_backend: bool,
    /// Services with series of their own (the first ones by frontend); the others count in
    /// the totals only.
    pub max_services: u32,
}

impl Default for MetricsSettings {
    fn default() -> Self {
        Self { listen: Some(DEFAULT_METRICS_LISTEN), per_backend: true, max_services: DEFAULT_MAX_SERVICES }
    }
}

impl MetricsSection {
    /// Checks the section and fills in the defaults.
    pub fn resolve(&self) -> Result<MetricsSettings, SettingError> {
        let defaults = MetricsSettings::default();
        let listen = match self.listen.as_deref() {
            None => defaults.listen,
            Some("off") => None,
            Some(text) => Some(text.parse::<SocketAddr>().map_err(|_| {
                SettingError::new("metrics.listen", format!("{text:?}"), SettingProblem::MetricsListen)
            })?),
        };
        let max_services = self.max_services.unwrap_or(defaults.max_services);
        if !(1..=MAX_MAX_SERVICES).contains(&max_services) {
            let range = SettingProblem::Range { min: 1, max: MAX_MAX_SERVICES.into() };
            return Err(SettingError::new("metrics.max_services", max_services.to_string(), range));
        }
        Ok(MetricsSettings { listen, per_backend: self.per_backend.unwrap_or(defaults.per_backend), max_services })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(text: &str) -> MetricsSection {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn defaults_serve_on_loopback_and_off_turns_it_off() {
        assert_eq!(MetricsSection::default().resolve().unwrap(), MetricsSettings::default());
        assert_eq!(section("listen = \"off\"").resolve().unwrap().listen, None);
        let listen = section("listen = \"0.0.0.0:9000\"").resolve().unwrap().listen;
        assert_eq!(listen, Some("0.0.0.0:9000".parse().unwrap()));
    }

    #[test]
    fn bad_values_name_the_key() {
        assert_eq!(
            section("listen = \"localhost\"").resolve(),
            Err(SettingError::new("metrics.listen", "\"localhost\"", SettingProblem::MetricsListen))
        );
        let err = section("max_services = 0").resolve().unwrap_err();
        assert_eq!((err.field, err.reason), ("metrics.max_services", SettingProblem::Range { min: 1, max: 100_000 }));
        assert!(toml::from_str::<MetricsSection>("port = 1").is_err(), "unknown keys are refused");
    }
}
