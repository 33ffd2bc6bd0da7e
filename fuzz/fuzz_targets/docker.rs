//! Docker containers' declarations: a `docker inspect` answer decoded as the agent's Docker
//! client decodes it, the container built from it (and from its `create` event, which
//! carries the labels), then its labels and env read as declarations
//! (`policy::declared`) and its `viking.policy` label weighed by the operator's rules.
//! Input: a `docker inspect` JSON object.

#![no_main]

use std::collections::HashMap;

use bollard::models::ContainerInspectResponse;
use libfuzzer_sys::fuzz_target;
use viking_agent::{
    config::{LabelRule, Trusted},
    policy::{self, trust::Trust},
    sources::docker::Container,
};
use viking_common::PolicyMode;

fuzz_target!(|data: &[u8]| {
    let Ok(inspect) = serde_json::from_slice::<ContainerInspectResponse>(data) else { return };
    let container = Container::from_inspect(&inspect, 42);
    check(&container);
    let mut attributes: HashMap<String, String> = container.labels.clone().into_iter().collect();
    attributes.insert("name".into(), container.name.clone());
    attributes.insert("image".into(), container.image.clone());
    check(&Container::from_create_event(&container.id, &attributes, 42));
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
