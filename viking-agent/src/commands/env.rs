//! `viking-agent env <service>...`: Docker-link style environment variables for services,
//! with their VIPs, for `docker run --env-file` or a task's environment, so software
//! written for `--link` (or ambassadord/registrator's prefixed variables) finds its
//! services at their VIPs.
//!
//! For a service `web-api` on `240.0.0.10`, ports 80/tcp and 443/tcp:
//!
//! ```text
//! WEB_API_PORT=tcp://240.0.0.10:80
//! WEB_API_PORT_80_TCP=tcp://240.0.0.10:80
//! WEB_API_PORT_80_TCP_ADDR=240.0.0.10
//! WEB_API_PORT_80_TCP_PORT=80
//! WEB_API_PORT_80_TCP_PROTO=tcp
//! WEB_API_PORT_443_TCP=tcp://240.0.0.10:443
//! ...
//! ```
//!
//! As Docker does, ports are sorted by number, TCP before UDP on the same number, and
//! `NAME_PORT` is the first. Services are read from the pinned maps, like `maps dump`, so
//! no agent needs to run. All or nothing: if any requested service is unknown, nothing is
//! printed and the command fails naming every unknown one, so an env file is never written
//! with some services silently missing.

use std::{collections::BTreeSet, net::IpAddr, path::Path};

use super::maps::{self, DumpedService, KeyProtocol};
use crate::model::Protocol;

/// How the variables are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum EnvFormat {
    /// `NAME=value` lines, for `docker run --env-file` (which takes values literally).
    Env,
    /// `export NAME='value'` lines, for `eval` or `source` in a shell.
    Shell,
    /// One JSON object, `{"NAME": "value", ...}` (keys sorted by name).
    Json,
}

/// Prints the variables of `services`, read from the maps pinned under `pin_dir`.
pub fn env(pin_dir: &Path, services: &[String], prefix: &str, format: EnvFormat) -> anyhow::Result<()> {
    let dump = maps::read(pin_dir)?;
    let text = render(&dump.services, services, prefix, format)
        .map_err(|err| anyhow::anyhow!("{err} (services pinned at {})", pin_dir.display()))?;
    print!("{text}");
    Ok(())
}

/// The variables of the services named `names` (each once, in the order given).
pub fn render(dumped: &[DumpedService], names: &[String], prefix: &str, format: EnvFormat) -> anyhow::Result<String> {
    if let Some(bad) = prefix.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '_')) {
        anyhow::bail!("`--prefix` = {prefix:?}: {bad:?} is not allowed in a variable name (letters, digits, '_')");
    }
    let unknown: Vec<String> =
        names.iter().filter(|name| !dumped.iter().any(|s| &s.name == *name)).map(|name| format!("{name:?}")).collect();
    anyhow::ensure!(unknown.is_empty(), "unknown service(s): {}", unknown.join(", "));
    let mut vars: Vec<(String, String)> = Vec::new();
    let mut seen_names = BTreeSet::new();
    let mut seen_aliases = BTreeSet::new();
    for name in names {
        if !seen_names.insert(name) {
            continue;
        }
        let alias = format!("{prefix}{}", name.to_ascii_uppercase().replace(['-', '.'], "_"));
        anyhow::ensure!(
            alias.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_'),
            "service {name:?}: variable {alias}_PORT would start with a digit; set `--prefix`"
        );
        anyhow::ensure!(
            seen_aliases.insert(alias.clone()),
            "service {name:?}: another service's variables are also named {alias}_*"
        );
        let mut ports: Vec<(u16, Protocol, IpAddr)> = Vec::new();
        for service in dumped.iter().filter(|s| &s.name == name) {
            // Another writer's protocol (not TCP or UDP) has no link variable.
            if let KeyProtocol::Served(protocol) = service.protocol {
                ports.push((service.port, protocol, service.vip));
            }
        }
        // Docker's order: by port number, TCP first when a number has both.
        ports.sort_by_key(|(port, protocol, _)| (*port, *protocol != Protocol::Tcp));
        for (i, (port, protocol, vip)) in ports.iter().enumerate() {
            let url = format!("{protocol}://{}", std::net::SocketAddr::new(*vip, *port));
            let var = format!("{alias}_PORT_{port}_{}", protocol.name().to_ascii_uppercase());
            if i == 0 {
                vars.push((format!("{alias}_PORT"), url.clone()));
            }
            vars.push((var.clone(), url));
            vars.push((format!("{var}_ADDR"), vip.to_string()));
            vars.push((format!("{var}_PORT"), port.to_string()));
            vars.push((format!("{var}_PROTO"), protocol.name().to_owned()));
        }
    }
    Ok(match format {
        EnvFormat::Json => {
            let object: serde_json::Map<String, serde_json::Value> =
                vars.into_iter().map(|(name, value)| (name, value.into())).collect();
            serde_json::to_string_pretty(&object)? + "\n"
        }
        _ => vars.iter().map(|(name, value)| line(format, name, value)).collect(),
    })
}

/// One variable; shell values are single-quoted (a `'` inside becomes `'\''`).
fn line(format: EnvFormat, name: &str, value: &str) -> String {
    match format {
        EnvFormat::Shell => format!("export {name}='{}'\n", value.replace('\'', r"'\''")),
        _ => format!("{name}={value}\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::maps::DumpedStats;

    fn service(name: &str, vip: &str, port: u16, protocol: KeyProtocol) -> DumpedService {
        DumpedService {
            name: name.into(),
            vip: vip.parse().unwrap(),
            port,
            protocol,
            algorithm: viking_common::Algorithm::RoundRobin,
            service_id: 0,
            affinity_seconds: 0,
            backends: Vec::new(),
            slots: 0,
            backend_stats: Vec::new(),
            outlier: crate::model::OutlierDetection::default().into(),
            stats: DumpedStats { redirected: 0, refused_no_backend: 0, refused_by_policy: 0 },
        }
    }

    const TCP: KeyProtocol = KeyProtocol::Served(Protocol::Tcp);
    const UDP: KeyProtocol = KeyProtocol::Served(Protocol::Udp);

    fn dump() -> Vec<DumpedService> {
        vec![
            service("web-api", "240.0.0.10", 443, TCP),
            service("web-api", "240.0.0.10", 80, TCP),
            service("dns", "240.0.0.53", 53, UDP),
            service("dns", "240.0.0.53", 53, TCP),
            // Another writer's SCTP frontend: no variables.
            service("dns", "240.0.0.53", 53, KeyProtocol::Other(132)),
            service("v6", "fd00::10", 8080, TCP),
            service("9lives", "240.0.0.9", 9, TCP),
        ]
    }

    fn names(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    #[test]
    fn docker_link_variables() {
        let text = render(&dump(), &names(&["web-api", "dns"]), "", EnvFormat::Env).unwrap();
        let expected = "\
WEB_API_PORT=tcp://240.0.0.10:80
WEB_API_PORT_80_TCP=tcp://240.0.0.10:80
WEB_API_PORT_80_TCP_ADDR=240.0.0.10
WEB_API_PORT_80_TCP_PORT=80
WEB_API_PORT_80_TCP_PROTO=tcp
WEB_API_PORT_443_TCP=tcp://240.0.0.10:443
WEB_API_PORT_443_TCP_ADDR=240.0.0.10
WEB_API_PORT_443_TCP_PORT=443
WEB_API_PORT_443_TCP_PROTO=tcp
DNS_PORT=tcp://240.0.0.53:53
DNS_PORT_53_TCP=tcp://240.0.0.53:53
DNS_PORT_53_TCP_ADDR=240.0.0.53
DNS_PORT_53_TCP_PORT=53
DNS_PORT_53_TCP_PROTO=tcp
DNS_PORT_53_UDP=udp://240.0.0.53:53
DNS_PORT_53_UDP_ADDR=240.0.0.53
DNS_PORT_53_UDP_PORT=53
DNS_PORT_53_UDP_PROTO=udp
";
        assert_eq!(text, expected);
    }

    #[test]
    fn prefix_ipv6_and_shell_quoting() {
        let text = render(&dump(), &names(&["v6", "9lives", "v6"]), "MYSTACK_", EnvFormat::Shell).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "export MYSTACK_V6_PORT='tcp://[fd00::10]:8080'");
        assert_eq!(lines[2], "export MYSTACK_V6_PORT_8080_TCP_ADDR='fd00::10'");
        assert!(lines.contains(&"export MYSTACK_9LIVES_PORT_9_TCP_PORT='9'"));
        assert_eq!(lines.len(), 10, "a service named twice is printed once");
    }

    #[test]
    fn errors_name_the_culprit() {
        let unknown = render(&dump(), &names(&["web-api", "db", "cache"]), "", EnvFormat::Env).unwrap_err();
        assert_eq!(unknown.to_string(), "unknown service(s): \"db\", \"cache\"");
        let digit = render(&dump(), &names(&["9lives"]), "", EnvFormat::Env).unwrap_err();
        assert!(digit.to_string().contains("\"9lives\""), "{digit}");
        let prefix = render(&dump(), &names(&["dns"]), "MY-", EnvFormat::Env).unwrap_err();
        assert!(prefix.to_string().starts_with("`--prefix` = \"MY-\""), "{prefix}");
        let clash = vec![service("a-b", "240.0.0.1", 1, TCP), service("a_b", "240.0.0.2", 1, TCP)];
        assert!(render(&clash, &names(&["a-b", "a_b"]), "", EnvFormat::Env).is_err());
    }

    #[test]
    fn json_holds_the_same_variables() {
        let json = render(&dump(), &["web-api".into()], "", EnvFormat::Json).unwrap();
        let object: serde_json::Value = serde_json::from_str(&json).unwrap();
        let env = render(&dump(), &["web-api".into()], "", EnvFormat::Env).unwrap();
        for line in env.lines() {
            let (name, value) = line.split_once('=').unwrap();
            assert_eq!(object[name], value, "{name}");
        }
        assert_eq!(object.as_object().unwrap().len(), env.lines().count());
    }
}
