//! Per-container policy: declared dependencies become kernel entries keyed by cgroup id.
//! A container's connect to a VIP is checked in the kernel at connect time; the agent only
//! keeps `CGROUP_POLICY`, `ALLOWED` and `OVERLAYS` in sync as containers, declarations and
//! services come and go (see `writer`), and logs undeclared connects (see `audit`).

pub(crate) mod audit;
mod declarations;
mod problems;
pub mod trust;
pub(crate) mod writer;

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

pub use declarations::{LABEL_CONNECT_TO, LABEL_POLICY, declared};
pub use problems::{BackendEnvError, PolicyProblem, PolicyWriteError};
use viking_common::PolicyMode;

use self::trust::Trust;
use crate::model::{Container, Frontend, Protocol, RuntimeScope, ServedServices};

/// Everything the kernel must hold for the containers of this host.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelPolicy {
    /// Cgroup id -> mode: every container whose mode is not `off`, and with a backstop
    /// every container (an `off` one needs its entry to escape the backstop's mode).
    pub modes: BTreeMap<u64, PolicyMode>,
    /// The backstop: cgroups below the runtime's parent without an entry get this mode.
    pub scope: Option<(RuntimeScope, PolicyMode)>,
    /// (cgroup id, VIP) the container declared.
    pub allowed: BTreeSet<(u64, IpAddr)>,
    /// (cgroup id, port on the ambassador, protocol) -> service frontend (VIP, port).
    pub overlays: BTreeMap<(u64, u16, Protocol), (IpAddr, u16)>,
}

/// What the policy is built from.
#[derive(Debug)]
pub struct Inputs<'a> {
    /// Running containers.
    pub containers: &'a [Container],
    /// `connect_to` tags of Consul instances: by Consul service, then by instance id.
    pub consul: &'a BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
    /// The services served (names resolve to their VIPs).
    pub services: &'a ServedServices,
    /// The operator's default mode and what labels may do to it.
    pub trust: Trust<'a>,
    /// The container runtime's parent cgroup, when known: the backstop's scope.
    pub scope: Option<RuntimeScope>,
}

/// Builds the kernel policy; the problems name containers and values that could not be
/// used (unknown services, bad labels). Costs work per container and declaration, not per
/// service served.
pub fn build(inputs: &Inputs<'_>) -> (KernelPolicy, Vec<PolicyProblem>) {
    let default_mode = inputs.trust.default_mode;
    let scope = inputs.scope.filter(|_| default_mode != PolicyMode::Off);
    let mut policy = KernelPolicy { scope: scope.map(|scope| (scope, default_mode)), ..KernelPolicy::default() };
    let mut problems = Vec::new();
    for container in inputs.containers {
        let who = container.display_name();
        let mut declared = declared(container);
        problems.append(&mut declared.problems);
        for (instance, services) in inputs.consul.values().flatten() {
            if belongs_to(instance, container) {
                declared.connect_to.extend(services.iter().cloned());
            }
        }
        let (mode, refused) = inputs.trust.mode(container, declared.mode);
        problems.extend(refused);
        if mode != PolicyMode::Off || scope.is_some() {
            policy.modes.insert(container.cgroup_id, mode);
        }
        for name in &declared.connect_to {
            let mut found = false;
            for frontend in inputs.services.frontends_of(name) {
                found = true;
                policy.allowed.insert((container.cgroup_id, frontend.vip));
            }
            if !found {
                problems.push(PolicyProblem::UnknownService { container: who.clone(), service: name.clone() });
            }
        }
        for (port, name) in &declared.overlays {
            let frontends: Vec<Frontend> = inputs.services.frontends_of(name).collect();
            for protocol in [Protocol::Tcp, Protocol::Udp] {
                let candidates: Vec<&Frontend> = frontends.iter().filter(|f| f.protocol == protocol).collect();
                // The service's frontend on the same port, else its only one.
                let target = candidates
                    .iter()
                    .find(|f| f.port == *port)
                    .or(candidates.first().filter(|_| candidates.len() == 1));
                match target {
                    Some(frontend) => {
                        policy.overlays.insert((container.cgroup_id, *port, protocol), (frontend.vip, frontend.port));
                    }
                    None if candidates.len() > 1 => problems.push(PolicyProblem::AmbiguousOverlay {
                        container: who.clone(),
                        port: *port,
                        service: name.clone(),
                        protocol,
                    }),
                    None => {}
                }
            }
        }
    }
    (policy, problems)
}

/// Whether a Consul instance id belongs to a container: Nomad ids contain the allocation
/// id; registrator ids are `<host>:<container name>:<port>`.
fn belongs_to(instance: &str, container: &Container) -> bool {
    if let Some(nomad) = &container.nomad {
        return instance.contains(&nomad.alloc_id);
    }
    instance.contains(&format!(":{}:", container.name)) || instance == container.name
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{NomadTask, Service};

    fn container(name: &str, cgroup_id: u64, labels: &[(&str, &str)], env: &[&str]) -> Container {
        Container {
            id: format!("{name}-id"),
            name: name.into(),
            image: "app:1".into(),
            cgroup_id,
            labels: labels.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect(),
            env: env.iter().map(|e| (*e).into()).collect(),
            nomad: None,
        }
    }

    static NO_ONE: crate::config::Trusted =
        crate::config::Trusted { images: Vec::new(), nomad_namespaces: Vec::new(), nomad_jobs: Vec::new() };

    fn trust(default_mode: PolicyMode) -> Trust<'static> {
        Trust { default_mode, labels: crate::config::LabelRule::Tighten, trusted: &NO_ONE }
    }

    fn services(list: &[(&str, &str, u16)]) -> ServedServices {
        let mut state = ServedServices::default();
        for (name, vip, port) in list {
            let frontend = Frontend { vip: vip.parse().unwrap(), port: *port, protocol: Protocol::Tcp };
            let service = Service {
                name: (*name).into(),
                frontend,
                algorithm: Default::default(),
                affinity_secs: 0,
                outlier: crate::model::OutlierDetection::default(),
                backends: vec![],
            };
            state.insert(std::sync::Arc::new(service));
        }
        state
    }

    #[test]
    fn declarations_resolve_to_vips_and_overlays() {
        let state = services(&[("web", "240.0.0.10", 80), ("app1", "240.0.0.20", 8080), ("app2", "240.0.0.21", 8080)]);
        let containers = [
            container("a", 1, &[(LABEL_CONNECT_TO, "web"), (LABEL_POLICY, "enforce")], &["BACKEND_APP=app1;80"]),
            container("b", 2, &[], &["BACKEND_APP=app2;80"]),
        ];
        let consul = BTreeMap::new();
        let (policy, problems) = build(&Inputs {
            containers: &containers,
            consul: &consul,
            services: &state,
            trust: trust(PolicyMode::Audit),
            scope: None,
        });
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(policy.modes, BTreeMap::from([(1, PolicyMode::Enforce), (2, PolicyMode::Audit)]));
        assert!(policy.allowed.contains(&(1, "240.0.0.10".parse().unwrap())));
        assert!(policy.allowed.contains(&(1, "240.0.0.20".parse().unwrap())));
        assert!(policy.allowed.contains(&(2, "240.0.0.21".parse().unwrap())));
        // The same ambassador port maps to a different service per container.
        assert_eq!(policy.overlays[&(1, 80, Protocol::Tcp)], ("240.0.0.20".parse().unwrap(), 8080));
        assert_eq!(policy.overlays[&(2, 80, Protocol::Tcp)], ("240.0.0.21".parse().unwrap(), 8080));
    }

    #[test]
    fn unknown_services_are_reported_and_skipped() {
        let state = services(&[("web", "240.0.0.10", 80)]);
        let containers = [container("a", 1, &[(LABEL_CONNECT_TO, "web,nope")], &[])];
        let consul = BTreeMap::new();
        let (policy, problems) = build(&Inputs {
            containers: &containers,
            consul: &consul,
            services: &state,
            trust: trust(PolicyMode::Enforce),
            scope: None,
        });
        assert_eq!(policy.allowed.len(), 1);
        assert_eq!(problems, [PolicyProblem::UnknownService { container: "a".into(), service: "nope".into() }]);
        assert_eq!(
            problems[0].to_string(),
            r#"container "a" declares service "nope", which does not exist (yet); ignored until it does"#
        );
    }

    #[test]
    fn an_overlay_to_a_service_of_several_ports_needs_its_own_port() {
        let state = services(&[("app", "240.0.0.20", 8080), ("app", "240.0.0.20", 9090)]);
        let containers =
            [container("a", 1, &[], &["BACKEND_APP=app;80"]), container("b", 2, &[], &["BACKEND_APP=app;9090"])];
        let consul = BTreeMap::new();
        let (policy, problems) = build(&Inputs {
            containers: &containers,
            consul: &consul,
            services: &state,
            trust: trust(PolicyMode::Off),
            scope: None,
        });
        assert_eq!(
            problems,
            [PolicyProblem::AmbiguousOverlay {
                container: "a".into(),
                port: 80,
                service: "app".into(),
                protocol: Protocol::Tcp
            }]
        );
        assert_eq!(
            problems[0].to_string(),
            r#"container "a": overlay port 80 -> "app": the service has several tcp ports and none is 80; ignored"#
        );
        assert_eq!(policy.overlays.keys().collect::<Vec<_>>(), [&(2, 9090, Protocol::Tcp)]);
    }

    #[test]
    fn consul_connect_to_tags_apply_to_the_nomad_task_that_registered_them() {
        let state = services(&[("db", "240.0.0.30", 5432)]);
        let mut task = container("web-task", 5, &[], &[]);
        task.nomad = Some(NomadTask { task: "web".into(), alloc_id: "4f1d-aa".into() });
        let instances =
            BTreeMap::from([("_nomad-task-4f1d-aa-web-web-http".to_owned(), BTreeSet::from(["db".to_owned()]))]);
        let consul = BTreeMap::from([("web".to_owned(), instances)]);
        let (policy, _) = build(&Inputs {
            containers: &[task],
            consul: &consul,
            services: &state,
            trust: trust(PolicyMode::Enforce),
            scope: None,
        });
        assert!(policy.allowed.contains(&(5, "240.0.0.30".parse().unwrap())));
    }

    #[test]
    fn with_a_backstop_every_container_has_an_entry_and_labels_only_tighten() {
        let state = services(&[("web", "240.0.0.10", 80)]);
        let containers = [
            container("quiet", 1, &[], &[]),
            container("escapes", 2, &[(LABEL_POLICY, "bypass")], &[]),
            container("strict", 3, &[(LABEL_POLICY, "enforce")], &[]),
        ];
        let consul = BTreeMap::new();
        let scope = RuntimeScope { cgroup_id: 99, level: 1 };
        let (policy, problems) = build(&Inputs {
            containers: &containers,
            consul: &consul,
            services: &state,
            trust: trust(PolicyMode::Audit),
            scope: Some(scope),
        });
        assert_eq!(policy.scope, Some((scope, PolicyMode::Audit)));
        assert_eq!(
            policy.modes,
            BTreeMap::from([(1, PolicyMode::Audit), (2, PolicyMode::Audit), (3, PolicyMode::Enforce)])
        );
        assert!(
            matches!(&problems[..], [PolicyProblem::LabelRefused { container, asked: PolicyMode::Bypass, .. }] if container == "escapes"),
            "{problems:?}"
        );

        // Default off: no backstop, and off containers need no entry.
        let (policy, _) = build(&Inputs {
            containers: &containers[..1],
            consul: &consul,
            services: &state,
            trust: trust(PolicyMode::Off),
            scope: Some(scope),
        });
        assert_eq!((policy.scope, policy.modes.len()), (None, 0));
    }
}
