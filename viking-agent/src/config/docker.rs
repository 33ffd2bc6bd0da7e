//! `[docker]`: containers as a source of identity and declared dependencies.

use std::net::IpAddr;

use serde::Deserialize;
use viking_common::PolicyMode;

/// The `[docker]` section as written.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DockerSection {
    host: Option<String>,
    policy: Option<String>,
    ambassador: Option<IpAddr>,
}

/// The resolved Docker settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DockerSettings {
    /// Path of dockerd's unix socket.
    pub socket: String,
    /// Policy of containers without a `viking.policy` label.
    pub policy: PolicyMode,
    /// The address containers connect to for their port overlays (`BACKEND_<NAME>=svc;port`).
    pub ambassador: IpAddr,
}

/// Default ambassador address: the first address of the default VIP range. Never give a
/// service this VIP.
pub const DEFAULT_AMBASSADOR: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(240, 0, 0, 1));

impl DockerSection {
    /// Resolves the section; `DOCKER_HOST` is the default socket, as for the docker CLI.
    pub fn resolve(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<DockerSettings, (&'static str, String, String)> {
        let host =
            self.host.clone().or_else(|| env("DOCKER_HOST")).unwrap_or_else(|| "unix:///var/run/docker.sock".into());
        let Some(socket) = host.strip_prefix("unix://").filter(|p| p.starts_with('/')) else {
            return Err(("docker.host", format!("{host:?}"), "only unix:///path sockets are supported".into()));
        };
        let policy = match self.policy.as_deref() {
            None | Some("off") => PolicyMode::Off,
            Some("audit") => PolicyMode::Audit,
            Some("enforce") => PolicyMode::Enforce,
            Some(other) => {
                return Err((
                    "docker.policy",
                    format!("{other:?}"),
                    "must be \"off\", \"audit\" or \"enforce\"".into(),
                ));
            }
        };
        Ok(DockerSettings {
            socket: socket.to_owned(),
            policy,
            ambassador: self.ambassador.unwrap_or(DEFAULT_AMBASSADOR),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_docker_host() {
        let settings = DockerSection::default().resolve(|_| None).unwrap();
        assert_eq!(settings.socket, "/var/run/docker.sock");
        assert_eq!(settings.policy, PolicyMode::Off);
        assert_eq!(settings.ambassador, DEFAULT_AMBASSADOR);
        let env =
            DockerSection::default().resolve(|k| (k == "DOCKER_HOST").then(|| "unix:///tmp/d.sock".into())).unwrap();
        assert_eq!(env.socket, "/tmp/d.sock");
    }

    #[test]
    fn bad_values_are_named() {
        let tcp = DockerSection { host: Some("tcp://10.0.0.1:2375".into()), ..Default::default() };
        assert_eq!(tcp.resolve(|_| None).unwrap_err().0, "docker.host");
        let policy = DockerSection { policy: Some("strict".into()), ..Default::default() };
        assert_eq!(policy.resolve(|_| None).unwrap_err().0, "docker.policy");
    }
}
