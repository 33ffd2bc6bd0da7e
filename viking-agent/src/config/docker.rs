//! `[docker]`: containers as a source of identity and declared dependencies.

use std::net::IpAddr;

use serde::Deserialize;
use viking_common::PolicyMode;

use super::{SettingError, SettingProblem};
use crate::model::{DEFAULT_POLICY_MODES, Named};

/// The `[docker]` section as written.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DockerSection {
    host: Option<String>,
    policy: Option<String>,
    ambassador: Option<IpAddr>,
    cgroup_parent: Option<String>,
    policy_labels: Option<String>,
    #[serde(default)]
    trusted: TrustedSection,
}

/// `[docker.trusted]`: containers whose `viking.policy` label may lower their own mode.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
struct TrustedSection {
    #[serde(default)]
    images: Vec<String>,
    #[serde(default)]
    nomad_namespaces: Vec<String>,
    #[serde(default)]
    nomad_jobs: Vec<String>,
}

/// What a container's `viking.policy` label may do to its own mode (`[docker]
/// policy_labels`). Containers in `[docker.trusted]` may always choose.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LabelRule {
    /// Raise it only: off -> audit -> enforce (the default).
    #[default]
    Tighten,
    /// Choose any mode, `bypass` and `off` included (everyone who deploys is trusted).
    Any,
    /// Never change it.
    Ignore,
}

impl Named for LabelRule {
    const ALL: &'static [Self] = &[Self::Tighten, Self::Any, Self::Ignore];

    /// The name used in the config and in logs.
    fn name(self) -> &'static str {
        match self {
            Self::Tighten => "tighten",
            Self::Any => "any",
            Self::Ignore => "ignore",
        }
    }
}

/// Containers the operator trusts to choose their own mode.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Trusted {
    /// Image names: `repo` (any tag), `repo:tag` or `registry/path/*` (a prefix).
    pub images: Vec<String>,
    /// Nomad namespaces (label `com.hashicorp.nomad.namespace`).
    pub nomad_namespaces: Vec<String>,
    /// Nomad job names (label `com.hashicorp.nomad.job_name`).
    pub nomad_jobs: Vec<String>,
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
    /// The runtime's cgroup parent, relative to the cgroup2 root; `None`: from dockerd's
    /// cgroup driver (`docker` for cgroupfs; none for systemd, whose `system.slice` holds
    /// more than containers).
    pub cgroup_parent: Option<String>,
    /// What labels may do to a container's mode.
    pub policy_labels: LabelRule,
    /// Containers whose labels may choose any mode.
    pub trusted: Trusted,
}

/// Default ambassador address: the first address of the default VIP range. Never give a
/// service this VIP.
pub const DEFAULT_AMBASSADOR: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(240, 0, 0, 1));

impl DockerSection {
    /// Resolves the section; `DOCKER_HOST` is the default socket, as for the docker CLI.
    pub fn resolve(&self, env: impl Fn(&str) -> Option<String>) -> Result<DockerSettings, SettingError> {
        let host =
            self.host.clone().or_else(|| env("DOCKER_HOST")).unwrap_or_else(|| "unix:///var/run/docker.sock".into());
        let Some(socket) = host.strip_prefix("unix://").filter(|p| p.starts_with('/')) else {
            return Err(SettingError::new("docker.host", format!("{host:?}"), SettingProblem::NotAUnixSocket));
        };
        let policy = match self.policy.as_deref() {
            None => PolicyMode::Off,
            Some(name) => PolicyMode::parse_among(name, DEFAULT_POLICY_MODES)
                .map_err(|err| SettingError::new("docker.policy", format!("{name:?}"), err.into()))?,
        };
        let policy_labels = LabelRule::parse_or_default(self.policy_labels.as_deref()).map_err(|err| {
            let value = format!("{:?}", self.policy_labels.as_deref().unwrap_or_default());
            SettingError::new("docker.policy_labels", value, err.into())
        })?;
        let cgroup_parent = match self.cgroup_parent.as_deref().map(|p| p.trim_matches('/')) {
            None => None,
            Some(parent) if !parent.is_empty() && !parent.split('/').any(|part| part == ".." || part == ".") => {
                Some(parent.to_owned())
            }
            Some(_) => {
                let value = format!("{:?}", self.cgroup_parent.as_deref().unwrap_or_default());
                return Err(SettingError::new("docker.cgroup_parent", value, SettingProblem::CgroupPath));
            }
        };
        let trusted = &self.trusted;
        for (field, names) in [
            ("docker.trusted.images", &trusted.images),
            ("docker.trusted.nomad_namespaces", &trusted.nomad_namespaces),
            ("docker.trusted.nomad_jobs", &trusted.nomad_jobs),
        ] {
            if let Some(bad) = names.iter().find(|name| name.trim().is_empty() || name.trim() != name.as_str()) {
                return Err(SettingError::new(field, format!("{bad:?}"), SettingProblem::TrustedName));
            }
        }
        Ok(DockerSettings {
            socket: socket.to_owned(),
            policy,
            ambassador: self.ambassador.unwrap_or(DEFAULT_AMBASSADOR),
            cgroup_parent,
            policy_labels,
            trusted: Trusted {
                images: trusted.images.clone(),
                nomad_namespaces: trusted.nomad_namespaces.clone(),
                nomad_jobs: trusted.nomad_jobs.clone(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::UnknownName;

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
        assert_eq!(tcp.resolve(|_| None).unwrap_err().reason, SettingProblem::NotAUnixSocket);
        let modes = UnknownName { expected: vec!["off", "audit", "enforce"] };
        for mode in ["strict", "bypass"] {
            let policy = DockerSection { policy: Some(mode.into()), ..Default::default() };
            assert_eq!(
                policy.resolve(|_| None),
                Err(SettingError::new("docker.policy", format!("{mode:?}"), modes.clone().into()))
            );
        }
        let labels = DockerSection { policy_labels: Some("lower".into()), ..Default::default() };
        let err = labels.resolve(|_| None).unwrap_err();
        assert_eq!((err.field, err.value.as_str()), ("docker.policy_labels", "\"lower\""));
        assert_eq!(err.to_string(), r#"`docker.policy_labels` = "lower": must be "tighten", "any" or "ignore""#);
        let parent = DockerSection { cgroup_parent: Some("/docker/../x".into()), ..Default::default() };
        assert_eq!(parent.resolve(|_| None).unwrap_err().reason, SettingProblem::CgroupPath);
        let trusted = DockerSection {
            trusted: TrustedSection { images: vec![String::new()], ..Default::default() },
            ..Default::default()
        };
        assert_eq!(
            trusted.resolve(|_| None),
            Err(SettingError::new("docker.trusted.images", "\"\"", SettingProblem::TrustedName))
        );
    }

    #[test]
    fn trust_settings_are_read() {
        let section: DockerSection = toml::from_str(
            "policy = \"enforce\"\ncgroup_parent = \"/docker/\"\npolicy_labels = \"ignore\"\n\
             [trusted]\nimages = [\"envoyproxy/envoy\"]\nnomad_jobs = [\"ingress\"]\n",
        )
        .unwrap();
        let settings = section.resolve(|_| None).unwrap();
        assert_eq!(settings.cgroup_parent.as_deref(), Some("docker"));
        assert_eq!(settings.policy_labels, LabelRule::Ignore);
        assert_eq!(settings.trusted.images, ["envoyproxy/envoy"]);
        assert_eq!(settings.trusted.nomad_jobs, ["ingress"]);
        assert_eq!(DockerSection::default().resolve(|_| None).unwrap().policy_labels, LabelRule::Tighten);
    }
}
