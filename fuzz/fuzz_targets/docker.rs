//! Docker containers' declarations: the parts of a `docker inspect` answer the agent reads
//! (id, name, `Config.Image`, `Config.Labels`, `Config.Env`) made into the container as the
//! agent makes it (`from_inspect`, and `from_create_event` from the labels a
//! `create` event carries), then its labels and env read as declarations
//! (`policy::declared`) and its `viking.policy` label weighed by the operator's rules
//! (`Trust::mode`). Input: a `docker inspect` JSON object. The rest of the answer is
//! bollard's generated decoding, which the agent does not look at: decoding only these
//! fields keeps the fuzzer on Viking's code (and the corpus a third of the size).

#![no_main]

use std::collections::HashMap;

use bollard::models::{ContainerConfig, ContainerInspectResponse};
use libfuzzer_sys::fuzz_target;
use serde::Deserialize;
use viking_agent::{
    config::{LabelRule, Trusted},
    model::Container,
    policy::{self, trust::Trust},
    sources::docker::{from_create_event, from_inspect},
};
use viking_common::PolicyMode;

/// The fields of `docker inspect` the agent reads, named as Docker names them.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Inspect {
    id: Option<String>,
    name: Option<String>,
    config: Option<Config>,
}

/// `Config` of `docker inspect`.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Config {
    image: Option<String>,
    labels: Option<HashMap<String, String>>,
    env: Option<Vec<String>>,
}

fuzz_target!(|data: &[u8]| {
    let Ok(Inspect { id, name, config }) = serde_json::from_slice::<Inspect>(data) else { return };
    let config =
        config.map(|Config { image, labels, env }| ContainerConfig { image, labels, env, ..Default::default() });
    let inspect = ContainerInspectResponse { id, name, config, ..Default::default() };
    let container = from_inspect(&inspect, 42);
    check(&container);
    let mut attributes: HashMap<String, String> = container.labels.clone().into_iter().collect();
    attributes.insert("name".into(), container.name.clone());
    attributes.insert("image".into(), container.image.clone());
    check(&from_create_event(&container.id, &attributes, 42));
});

fn check(container: &Container) {
    let declared = policy::declared(container);
    for (port, service) in &declared.overlays {
        assert_ne!(*port, 0);
        assert!(declared.connect_to.contains(service), "overlay {port} -> {service:?} is not declared");
    }
    for name in &declared.connect_to {
        assert!((1..=63).contains(&name.len()), "{name:?}: not a DNS label");
        assert!(name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{name:?}");
    }
    let trusted = Trusted {
        images: vec!["envoyproxy/envoy".into(), "registry.local:5000/mesh/*".into(), "busybox:1.36".into()],
        nomad_namespaces: vec!["infra".into()],
        nomad_jobs: vec!["ingress".into()],
    };
    for default_mode in [PolicyMode::Off, PolicyMode::Audit, PolicyMode::Enforce] {
        for labels in [LabelRule::Tighten, LabelRule::Any, LabelRule::Ignore] {
            let trust = Trust { default_mode, labels, trusted: &trusted };
            let (mode, refused) = trust.mode(container, declared.mode);
            assert!(mode == default_mode || Some(mode) == declared.mode, "{mode:?}");
            assert_eq!(refused.is_some(), declared.mode.is_some_and(|asked| asked != mode));
        }
    }
}
