//! What a container declares it uses, from its labels and environment:
//!
//! - label `viking.connect_to=redis,web`: it may connect to those services;
//! - env `BACKEND_<NAME>=<service>;<port>` (embassy): it may connect to `<service>`, and
//!   reaches it at `<ambassador>:<port>` (a port overlay of its own);
//! - label `viking.policy=off|audit|enforce|bypass`: the mode it asks for (what it gets is
//!   the operator's call, see `trust`).
//!
//! A bad entry is reported with the container and the value, and skipped; the container's
//! other declarations still apply.

use std::collections::{BTreeMap, BTreeSet};

use viking_common::PolicyMode;

use super::problems::{BackendEnvError, PolicyProblem};
use crate::model::{Container, Named, check_service_name};

/// Label listing declared services.
pub const LABEL_CONNECT_TO: &str = "viking.connect_to";
/// Label choosing the container's policy mode.
pub const LABEL_POLICY: &str = "viking.policy";
/// Environment prefix of embassy-style declarations.
pub const ENV_BACKEND_PREFIX: &str = "BACKEND_";

/// One container's declarations.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Declared {
    /// Mode the `viking.policy` label asks for.
    pub mode: Option<PolicyMode>,
    /// Services it may connect to.
    pub connect_to: BTreeSet<String>,
    /// Port on the ambassador address -> service.
    pub overlays: BTreeMap<u16, String>,
    /// Bad entries, each naming the container and the value.
    pub problems: Vec<PolicyProblem>,
}

/// Reads a container's labels and environment.
pub fn declared(container: &Container) -> Declared {
    let who = container.display_name();
    let mut out = Declared::default();
    if let Some(list) = container.labels.get(LABEL_CONNECT_TO) {
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match check_service_name(name) {
                Ok(()) => {
                    out.connect_to.insert(name.to_owned());
                }
                Err(error) => out.problems.push(PolicyProblem::ConnectToName {
                    container: who.clone(),
                    service: name.to_owned(),
                    error,
                }),
            }
        }
    }
    if let Some(mode) = container.labels.get(LABEL_POLICY) {
        match PolicyMode::parse(mode) {
            Ok(mode) => out.mode = Some(mode),
            Err(_) => out.problems.push(PolicyProblem::PolicyLabel { container: who.clone(), value: mode.clone() }),
        }
    }
    for entry in &container.env {
        let Some((key, value)) = entry.split_once('=') else { continue };
        if !key.starts_with(ENV_BACKEND_PREFIX) {
            continue;
        }
        match parse_backend_env(value) {
            Ok((service, port)) => {
                if let Some(previous) = out.overlays.insert(port, service.clone()) {
                    out.problems.push(PolicyProblem::OverlayRemapped {
                        container: who.clone(),
                        key: key.to_owned(),
                        port,
                        service: service.clone(),
                        previous,
                    });
                }
                out.connect_to.insert(service);
            }
            Err(error) => out.problems.push(PolicyProblem::BackendEnv {
                container: who.clone(),
                key: key.to_owned(),
                value: value.to_owned(),
                error,
            }),
        }
    }
    out
}

/// `<service>;<port>`.
fn parse_backend_env(value: &str) -> Result<(String, u16), BackendEnvError> {
    let (service, port) = value.split_once(';').ok_or(BackendEnvError::Format)?;
    let service = service.trim();
    check_service_name(service).map_err(|error| BackendEnvError::Service { service: service.to_owned(), error })?;
    let port: u16 = port.trim().parse().map_err(|_| BackendEnvError::Port(port.trim().to_owned()))?;
    if port == 0 {
        return Err(BackendEnvError::PortZero);
    }
    Ok((service.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::NameError;

    fn container(labels: &[(&str, &str)], env: &[&str]) -> Container {
        Container {
            id: "c0ffee".into(),
            name: "client".into(),
            image: "app:1".into(),
            cgroup_id: 7,
            labels: labels.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect(),
            env: env.iter().map(|e| (*e).into()).collect(),
            nomad: None,
        }
    }

    #[test]
    fn labels_and_env_declare_services_and_overlays() {
        let d = declared(&container(
            &[(LABEL_CONNECT_TO, "redis, web"), (LABEL_POLICY, "enforce")],
            &["BACKEND_APP1=app1;80", "PATH=/bin"],
        ));
        assert_eq!(d.mode, Some(PolicyMode::Enforce));
        assert_eq!(d.connect_to.iter().map(String::as_str).collect::<Vec<_>>(), ["app1", "redis", "web"]);
        assert_eq!(d.overlays.get(&80).map(String::as_str), Some("app1"));
        assert!(d.problems.is_empty(), "{:?}", d.problems);
    }

    #[test]
    fn bad_entries_are_named_and_skipped() {
        let d = declared(&container(
            &[(LABEL_CONNECT_TO, "ok,bad name"), (LABEL_POLICY, "strict")],
            &["BACKEND_X=x;99999", "BACKEND_Y=y", "BACKEND_Z=z;8080"],
        ));
        assert_eq!(d.connect_to.iter().map(String::as_str).collect::<Vec<_>>(), ["ok", "z"]);
        assert_eq!(d.mode, None);
        let container = || "client".to_owned();
        let env = |key: &str, value: &str, error| PolicyProblem::BackendEnv {
            container: container(),
            key: key.into(),
            value: value.into(),
            error,
        };
        assert_eq!(
            d.problems,
            [
                PolicyProblem::ConnectToName {
                    container: container(),
                    service: "bad name".into(),
                    error: NameError::Characters
                },
                PolicyProblem::PolicyLabel { container: container(), value: "strict".into() },
                env("BACKEND_X", "x;99999", BackendEnvError::Port("99999".into())),
                env("BACKEND_Y", "y", BackendEnvError::Format),
            ]
        );
        let text: Vec<String> = d.problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                r#"container "client": label viking.connect_to names "bad name", which may only contain letters, digits, '-' and '_'; ignored"#,
                r#"container "client": label viking.policy = "strict" is not off, audit, enforce or bypass; the default applies"#,
                r#"container "client": BACKEND_X="x;99999": port "99999" is not 1..=65535; ignored"#,
                r#"container "client": BACKEND_Y="y": expected <service>;<port>; ignored"#,
            ]
        );
    }
}
