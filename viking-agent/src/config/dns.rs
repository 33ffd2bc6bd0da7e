//! `[dns]`: the agent's DNS responder, which answers `<service>.service.<domain>` with the
//! service's VIP (the responder is the `dns` module). The section's presence turns the
//! responder on; every key is optional:
//!
//! ```toml
//! [dns]
//! listen = ["127.0.0.1:8600"]   # UDP and TCP on each address
//! domain = "viking"             # names are <service>.service.viking
//! ttl_seconds = 5
//! ```

use std::net::SocketAddr;

use serde::Deserialize;

use super::{SettingError, SettingProblem};

/// Default listen address: loopback, on Consul's DNS port, so a host resolver
/// (systemd-resolved, dnsmasq) forwards the domain to it and nothing else can reach it.
const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 8600);
/// Default domain: names are `<service>.service.viking`.
const DEFAULT_DOMAIN: &str = "viking";
/// Default TTL: short, so a removed service stops resolving within seconds.
const DEFAULT_TTL: u32 = 5;
/// Largest accepted TTL. VIPs are stable, but a removed service must stop resolving, and a
/// larger number is more likely milliseconds written by mistake than a wish.
const MAX_TTL: u32 = 3600;
/// Longest domain: a 63-character service name, `.service.` and the final dot must still
/// fit the 253 characters of a DNS name.
const MAX_DOMAIN_LEN: usize = 253 - 63 - ".service.".len() - 1;

/// The responder's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsSettings {
    /// Addresses to answer on, over both UDP and TCP.
    pub listen: Vec<SocketAddr>,
    /// The zone: names are `<service>.service.<domain>`. Lower-case, no final dot.
    pub domain: String,
    /// TTL in seconds of every answer, and of negative answers (the SOA minimum).
    pub ttl: u32,
}

/// The `[dns]` section as written.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsSection {
    listen: Option<Vec<SocketAddr>>,
    domain: Option<String>,
    ttl_seconds: Option<u32>,
}

impl DnsSection {
    /// Checks the section and fills in the defaults.
    pub fn resolve(&self) -> Result<DnsSettings, SettingError> {
        let listen = self.listen.clone().unwrap_or_else(|| vec![DEFAULT_LISTEN]);
        if listen.is_empty() {
            return Err(SettingError::new("dns.listen", "[]", SettingProblem::Empty("address")));
        }
        for (i, addr) in listen.iter().enumerate() {
            if addr.port() == 0 {
                return Err(SettingError::new("dns.listen", format!("\"{addr}\""), SettingProblem::PortZero));
            }
            if listen[..i].contains(addr) {
                return Err(SettingError::new("dns.listen", format!("\"{addr}\""), SettingProblem::ListedTwice));
            }
        }
        let written = self.domain.as_deref().unwrap_or(DEFAULT_DOMAIN);
        let domain = written.strip_suffix('.').unwrap_or(written).to_ascii_lowercase();
        check_domain(&domain).map_err(|err| SettingError::new("dns.domain", format!("{written:?}"), err.into()))?;
        let ttl = self.ttl_seconds.unwrap_or(DEFAULT_TTL);
        if ttl > MAX_TTL {
            let range = SettingProblem::Range { min: 0, max: MAX_TTL.into() };
            return Err(SettingError::new("dns.ttl_seconds", ttl.to_string(), range));
        }
        Ok(DnsSettings { listen, domain, ttl })
    }
}

/// Why a domain cannot hold the service names.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// Too long for a 63-character service name to fit under it.
    #[error("longer than {MAX_DOMAIN_LEN} characters")]
    TooLong,
    /// An empty label, or one longer than 63 characters.
    #[error("every dot-separated label must be 1 to 63 characters")]
    LabelLength,
    /// A label with a character other than a letter, a digit or `-`.
    #[error("label {0:?} may only contain letters, digits and '-'")]
    LabelCharacters(String),
    /// A label with a leading or trailing `-`.
    #[error("label {0:?} may not start or end with '-'")]
    LabelHyphen(String),
}

/// A domain is dot-separated labels of letters, digits and '-' (host name rules), short
/// enough for every service name to fit under it.
fn check_domain(domain: &str) -> Result<(), DomainError> {
    if domain.len() > MAX_DOMAIN_LEN {
        return Err(DomainError::TooLong);
    }
    for label in domain.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(DomainError::LabelLength);
        }
        if !label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(DomainError::LabelCharacters(label.to_owned()));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(DomainError::LabelHyphen(label.to_owned()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<DnsSettings, SettingError> {
        toml::from_str::<DnsSection>(text).expect("valid section").resolve()
    }

    #[test]
    fn defaults() {
        let settings = parse("").unwrap();
        assert_eq!(settings.listen, vec![DEFAULT_LISTEN]);
        assert_eq!(settings.domain, "viking");
        assert_eq!(settings.ttl, 5);
    }

    #[test]
    fn written_values_are_used() {
        let settings =
            parse("listen = [\"172.17.0.1:53\", \"[::1]:53\"]\ndomain = \"Lb.Example.\"\nttl_seconds = 0").unwrap();
        assert_eq!(settings.listen, vec!["172.17.0.1:53".parse().unwrap(), "[::1]:53".parse().unwrap()]);
        assert_eq!(settings.domain, "lb.example", "lower-cased, final dot dropped");
        assert_eq!(settings.ttl, 0);
    }

    #[test]
    fn bad_values_are_named() {
        assert_eq!(parse("listen = []"), Err(SettingError::new("dns.listen", "[]", SettingProblem::Empty("address"))));
        assert_eq!(
            parse("listen = [\"127.0.0.1:0\"]"),
            Err(SettingError::new("dns.listen", "\"127.0.0.1:0\"", SettingProblem::PortZero))
        );
        assert_eq!(
            parse("listen = [\"127.0.0.1:53\", \"127.0.0.1:53\"]").unwrap_err().reason,
            SettingProblem::ListedTwice
        );
        for (domain, why) in [
            ("", DomainError::LabelLength),
            (".", DomainError::LabelLength),
            ("a..b", DomainError::LabelLength),
            ("has space", DomainError::LabelCharacters("has space".into())),
            ("-x", DomainError::LabelHyphen("-x".into())),
            ("x_y", DomainError::LabelCharacters("x_y".into())),
            (&"a".repeat(64), DomainError::LabelLength),
            (&"a.".repeat(100), DomainError::TooLong),
        ] {
            let err = parse(&format!("domain = {domain:?}")).unwrap_err();
            assert_eq!(err, SettingError::new("dns.domain", format!("{domain:?}"), why.into()), "{domain:?}");
        }
        let ttl = parse("ttl_seconds = 3601").unwrap_err();
        assert_eq!(ttl, SettingError::new("dns.ttl_seconds", "3601", SettingProblem::Range { min: 0, max: 3600 }));
        assert_eq!(ttl.to_string(), "`dns.ttl_seconds` = 3601: must be 0..=3600");
    }

    #[test]
    fn unknown_keys_and_bad_addresses_are_named_by_toml() {
        let unknown = toml::from_str::<DnsSection>("ttl = 5").unwrap_err().to_string();
        assert!(unknown.contains("ttl"), "{unknown}");
        let address = toml::from_str::<DnsSection>("listen = [\"localhost:53\"]").unwrap_err().to_string();
        assert!(address.contains("listen"), "{address}");
    }
}
