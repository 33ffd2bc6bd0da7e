//! `[consul]`: where Consul is and how Viking reads it. Unset fields fall back to Consul's
//! own environment variables, as the `consul` CLI does: `CONSUL_HTTP_ADDR`,
//! `CONSUL_HTTP_TOKEN`, `CONSUL_CACERT`, `CONSUL_CLIENT_CERT`, `CONSUL_CLIENT_KEY`,
//! `CONSUL_TLS_SERVER_NAME`.

use std::{path::PathBuf, time::Duration};

use ipnet::IpNet;
use serde::Deserialize;

use super::{SettingError, SettingProblem};

/// The `[consul]` section as written.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsulSection {
    address: Option<String>,
    token: Option<String>,
    datacenter: Option<String>,
    #[serde(default)]
    stale: bool,
    ca_cert: Option<PathBuf>,
    client_cert: Option<PathBuf>,
    client_key: Option<PathBuf>,
    tls_server_name: Option<String>,
    vip_range: Option<IpNet>,
    kv_prefix: Option<String>,
    tag: Option<String>,
    wait_seconds: Option<u64>,
    vip_release_after_seconds: Option<u64>,
}

/// The resolved Consul settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsulSettings {
    /// Base URL, `http://host:port` or `https://host:port`.
    pub url: String,
    /// ACL token, sent as `X-Consul-Token`.
    pub token: Option<String>,
    /// `?dc=` for every query.
    pub datacenter: Option<String>,
    /// `?stale`: any server may answer (spreads load; can lag the leader slightly).
    pub stale: bool,
    /// CA bundle to verify Consul's certificate.
    pub ca_cert: Option<PathBuf>,
    /// Client certificate and key (PEM) for mutual TLS.
    pub client_identity: Option<(PathBuf, PathBuf)>,
    /// Name expected in Consul's certificate when it differs from the address's host.
    pub tls_server_name: Option<String>,
    /// Where VIPs of Consul services are allocated from (inside `agent.vip_ranges`).
    pub vip_range: IpNet,
    /// KV prefix of the VIP allocation records.
    pub kv_prefix: String,
    /// Only services with this tag get a VIP; `None` = every service but `consul` itself.
    pub tag: Option<String>,
    /// `?wait=` of blocking queries.
    pub wait: Duration,
    /// How long a service must be gone from the catalog before its VIP is released.
    pub vip_release_after: Duration,
}

/// Default allocation range: a /8 inside 240.0.0.0/4 that static configs (240.0.0.x in the
/// examples) do not use.
pub fn default_consul_vip_range() -> IpNet {
    IpNet::V4(ipnet::Ipv4Net::new(std::net::Ipv4Addr::new(241, 0, 0, 0), 8).expect("valid prefix"))
}

/// Consul's default blocking wait.
const DEFAULT_WAIT: Duration = Duration::from_secs(300);
/// Consul's largest accepted wait.
const MAX_WAIT_SECONDS: u64 = 600;
/// A day: a service that went away for a deploy or an outage keeps its VIP.
const DEFAULT_RELEASE_AFTER: Duration = Duration::from_secs(24 * 3600);

impl ConsulSection {
    /// Resolves the section against the environment. `env` is `std::env::var` in the agent
    /// and a map in tests.
    pub fn resolve(&self, env: impl Fn(&str) -> Option<String>) -> Result<ConsulSettings, SettingError> {
        let address =
            self.address.clone().or_else(|| env("CONSUL_HTTP_ADDR")).unwrap_or_else(|| "127.0.0.1:8500".into());
        let url = if address.starts_with("http://") || address.starts_with("https://") {
            address.trim_end_matches('/').to_owned()
        } else if env("CONSUL_HTTP_SSL").is_some_and(|v| v == "true" || v == "1") {
            format!("https://{address}")
        } else {
            format!("http://{address}")
        };
        if url.split("://").nth(1).is_none_or(str::is_empty) {
            return Err(SettingError::new("consul.address", format!("{address:?}"), SettingProblem::ConsulAddress));
        }
        let client_cert = self.client_cert.clone().or_else(|| env("CONSUL_CLIENT_CERT").map(PathBuf::from));
        let client_key = self.client_key.clone().or_else(|| env("CONSUL_CLIENT_KEY").map(PathBuf::from));
        let client_identity = match (client_cert, client_key) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            (cert, _) => {
                let (field, set) = if cert.is_some() {
                    ("consul.client_key", "client_cert")
                } else {
                    ("consul.client_cert", "client_key")
                };
                return Err(SettingError::new(field, "(missing)", SettingProblem::RequiredWith(set)));
            }
        };
        let wait_seconds = self.wait_seconds.unwrap_or(DEFAULT_WAIT.as_secs());
        if !(1..=MAX_WAIT_SECONDS).contains(&wait_seconds) {
            let range = SettingProblem::Range { min: 1, max: MAX_WAIT_SECONDS };
            return Err(SettingError::new("consul.wait_seconds", wait_seconds.to_string(), range));
        }
        let kv_prefix = self.kv_prefix.clone().unwrap_or_else(|| "viking".into());
        if kv_prefix.is_empty() || kv_prefix.starts_with('/') || kv_prefix.ends_with('/') {
            return Err(SettingError::new("consul.kv_prefix", format!("{kv_prefix:?}"), SettingProblem::KvPrefix));
        }
        Ok(ConsulSettings {
            url,
            token: self.token.clone().or_else(|| env("CONSUL_HTTP_TOKEN")).filter(|t| !t.is_empty()),
            datacenter: self.datacenter.clone(),
            stale: self.stale,
            ca_cert: self.ca_cert.clone().or_else(|| env("CONSUL_CACERT").map(PathBuf::from)),
            client_identity,
            tls_server_name: self.tls_server_name.clone().or_else(|| env("CONSUL_TLS_SERVER_NAME")),
            vip_range: self.vip_range.unwrap_or_else(default_consul_vip_range),
            kv_prefix,
            tag: self.tag.clone(),
            wait: Duration::from_secs(wait_seconds),
            vip_release_after: self.vip_release_after_seconds.map_or(DEFAULT_RELEASE_AFTER, Duration::from_secs),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
        move |key| vars.get(key).cloned()
    }

    #[test]
    fn defaults_follow_consul_conventions() {
        let settings = ConsulSection::default().resolve(env(&[])).unwrap();
        assert_eq!(settings.url, "http://127.0.0.1:8500");
        assert_eq!(settings.token, None);
        assert_eq!(settings.wait, Duration::from_secs(300));
        assert_eq!(settings.kv_prefix, "viking");
        assert_eq!(settings.vip_range, default_consul_vip_range());
    }

    #[test]
    fn environment_fills_unset_fields() {
        let settings = ConsulSection::default()
            .resolve(env(&[
                ("CONSUL_HTTP_ADDR", "https://consul.service:8501"),
                ("CONSUL_HTTP_TOKEN", "secret"),
                ("CONSUL_CACERT", "/etc/ca.pem"),
                ("CONSUL_CLIENT_CERT", "/etc/c.pem"),
                ("CONSUL_CLIENT_KEY", "/etc/k.pem"),
                ("CONSUL_TLS_SERVER_NAME", "server.dc1.consul"),
            ]))
            .unwrap();
        assert_eq!(settings.url, "https://consul.service:8501");
        assert_eq!(settings.token.as_deref(), Some("secret"));
        assert_eq!(settings.ca_cert, Some(PathBuf::from("/etc/ca.pem")));
        assert_eq!(settings.client_identity, Some(("/etc/c.pem".into(), "/etc/k.pem".into())));
        assert_eq!(settings.tls_server_name.as_deref(), Some("server.dc1.consul"));
        let plain = ConsulSection::default().resolve(env(&[("CONSUL_HTTP_ADDR", "10.0.0.1:8500")])).unwrap();
        assert_eq!(plain.url, "http://10.0.0.1:8500");
    }

    #[test]
    fn the_file_wins_over_the_environment() {
        let section = ConsulSection { token: Some("from-file".into()), ..Default::default() };
        assert_eq!(
            section.resolve(env(&[("CONSUL_HTTP_TOKEN", "from-env")])).unwrap().token.as_deref(),
            Some("from-file")
        );
    }

    #[test]
    fn bad_values_are_named() {
        let half_tls = ConsulSection { client_cert: Some("/c.pem".into()), ..Default::default() };
        assert_eq!(
            half_tls.resolve(env(&[])),
            Err(SettingError::new("consul.client_key", "(missing)", SettingProblem::RequiredWith("client_cert")))
        );
        let wait = ConsulSection { wait_seconds: Some(601), ..Default::default() };
        assert_eq!(
            wait.resolve(env(&[])),
            Err(SettingError::new("consul.wait_seconds", "601", SettingProblem::Range { min: 1, max: 600 }))
        );
        let prefix = ConsulSection { kv_prefix: Some("/viking".into()), ..Default::default() };
        assert_eq!(
            prefix.resolve(env(&[])),
            Err(SettingError::new("consul.kv_prefix", "\"/viking\"", SettingProblem::KvPrefix))
        );
        let address = ConsulSection { address: Some("http://".into()), ..Default::default() };
        assert_eq!(address.resolve(env(&[])).unwrap_err().reason, SettingProblem::ConsulAddress);
    }
}
