//! Reading instances as Consul answers them: addresses, ports, loopback on this node or
//! another, limits, declarations, weights, and the shape their meta declares.

use viking_common::Algorithm;

use super::*;
use crate::{
    model::{BackendError, OutlierDetection},
    sources::consul::{
        problems::OutlierMetaError,
        wire::{Node, ServiceInstance, Weights},
    },
};

fn entry(id: &str, node_address: &str, address: &str, port: i64, meta: &[(&str, &str)]) -> HealthEntry {
    HealthEntry {
        node: Node { node: format!("node-{id}"), address: node_address.into() },
        service: ServiceInstance {
            id: id.into(),
            service: "web".into(),
            address: address.into(),
            port,
            meta: Some(Box::new(meta.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect())),
            tags: None,
            weights: Some(Weights { passing: 1 }),
        },
    }
}

/// Reads `entries` on a host whose Consul node is `local-node`.
fn read_here(entries: &[HealthEntry], max_backends: u16) -> Reading {
    let vip_ranges = VipRanges::default();
    read("web", entries, &ReadContext { vip_ranges: &vip_ranges, max_backends, local_node: Some("local-node") })
}

#[test]
fn an_empty_service_address_means_the_node_address() {
    let reading = read_here(&[entry("a", "10.0.0.1", "", 8080, &[])], 1024);
    assert_eq!(reading.backends[0].addr, "10.0.0.1:8080".parse().unwrap());
    assert_eq!(reading.shape.unwrap().port, 8080, "the common instance port is the VIP port");
}

#[test]
fn viking_port_meta_sets_the_logical_port_over_dynamic_instance_ports() {
    let meta = [(META_PORT, "80"), (META_PROTOCOL, "tcp"), (META_ALGORITHM, "least_conn")];
    let entries = [entry("a", "10.0.0.1", "", 23456, &meta), entry("b", "10.0.0.2", "", 31001, &meta)];
    let reading = read_here(&entries, 1024);
    let shape = reading.shape.unwrap();
    assert_eq!((shape.port, shape.algorithm), (80, Algorithm::LeastConn));
    assert_eq!(reading.backends.len(), 2, "backends keep their own ports");
    assert!(reading.problems.is_empty(), "{:?}", reading.problems);
}

#[test]
fn outlier_meta_sets_ejection_and_a_bad_value_keeps_its_default_with_a_message() {
    let meta = [
        ("viking_outlier_consecutive_failures", "5"),
        ("viking_outlier_ejection_seconds", "ten"),
        ("viking_outlier_max_ejection_percent", "30"),
    ];
    let reading = read_here(&[entry("a", "10.0.0.1", "", 80, &meta)], 1024);
    let outlier = reading.shape.unwrap().outlier;
    assert_eq!((outlier.consecutive_failures, outlier.max_ejection_percent), (5, 30));
    assert_eq!(outlier.ejection_secs, OutlierDetection::default().ejection_secs);
    assert_eq!(
        reading.problems,
        [ConsulProblem::OutlierMeta {
            service: "web".into(),
            key: "ejection_seconds".into(),
            value: "ten".into(),
            error: OutlierMetaError::NotAnInteger
        }]
    );
    assert_eq!(
        reading.problems[0].to_string(),
        "consul service \"web\": meta viking_outlier_ejection_seconds = \"ten\": must be an integer; its default is used"
    );

    let off = [("viking_outlier_consecutive_failures", "0")];
    let reading = read_here(&[entry("a", "10.0.0.1", "", 80, &off)], 1024);
    assert_eq!(reading.shape.unwrap().outlier.policy(), viking_common::OutlierPolicy::default(), "0 turns it off");
}

#[test]
fn different_ports_without_meta_skip_the_service_with_a_reason() {
    let entries = [entry("a", "10.0.0.1", "", 1000, &[]), entry("b", "10.0.0.2", "", 2000, &[])];
    let reading = read_here(&entries, 1024);
    assert_eq!(reading.shape, None);
    assert_eq!(reading.problems, [ConsulProblem::PortsDiffer { service: "web".into(), ports: vec![1000, 2000] }]);
    assert!(reading.problems[0].to_string().contains("different ports (1000, 2000)"), "{:?}", reading.problems);
}

#[test]
fn bad_instances_are_skipped_and_named() {
    let entries = [
        entry("good", "10.0.0.1", "", 80, &[]),
        entry("noip", "10.0.0.2", "web.local", 80, &[]),
        entry("zero", "10.0.0.3", "", 0, &[]),
        entry("huge", "10.0.0.4", "", 70000, &[]),
        entry("vip", "10.0.0.5", "240.0.0.9", 80, &[]),
        entry("loop", "10.0.0.6", "127.0.0.1", 80, &[]),
        entry("multi", "10.0.0.7", "224.0.0.1", 80, &[]),
    ];
    let reading = read_here(&entries, 1024);
    assert_eq!(reading.backends.len(), 1);
    let skipped: Vec<(&str, &InstanceProblem)> = reading
        .problems
        .iter()
        .map(|problem| match problem {
            ConsulProblem::Instance { instance, reason, .. } => (instance.as_str(), reason),
            other => panic!("not an instance: {other}"),
        })
        .collect();
    let loopback = "127.0.0.1".parse().unwrap();
    let backend = |addr: &str, error| InstanceProblem::Backend { addr: addr.parse().unwrap(), error };
    assert_eq!(
        skipped,
        [
            ("noip", &InstanceProblem::NotAnIp("web.local".into())),
            ("zero", &InstanceProblem::Port(0)),
            ("huge", &InstanceProblem::Port(70000)),
            ("vip", &backend("240.0.0.9:80", BackendError::InsideVipRanges(VipRanges::default()))),
            (
                "loop",
                &InstanceProblem::LoopbackElsewhere {
                    ip: loopback,
                    node: "node-loop".into(),
                    local: "local-node".into()
                }
            ),
            ("multi", &backend("224.0.0.1:80", BackendError::NotUnicast)),
        ]
    );
    assert_eq!(
        reading.problems[3].to_string(),
        "consul service \"web\" instance \"vip\": address 240.0.0.9:80: inside the VIP ranges (240.0.0.0/4); \
         a VIP cannot be a backend; instance skipped"
    );
}

#[test]
fn a_loopback_instance_is_a_backend_only_on_its_own_node() {
    let mut here = entry("dev", "127.0.0.1", "", 8080, &[]);
    here.node.node = "LOCAL-NODE".into();
    let elsewhere = entry("other", "127.0.0.1", "127.0.0.1", 8080, &[]);
    let reading = read_here(&[here.clone(), elsewhere.clone()], 1024);
    assert_eq!(reading.backends.iter().map(|b| b.addr.to_string()).collect::<Vec<_>>(), ["127.0.0.1:8080"]);
    assert!(
        matches!(
            &reading.problems[..],
            [ConsulProblem::Instance { instance, reason: InstanceProblem::LoopbackElsewhere { node, .. }, .. }]
                if instance == "other" && node == "node-other"
        ),
        "{:?}",
        reading.problems
    );
    let vip_ranges = VipRanges::default();
    let unknown = read("web", &[here], &ReadContext { vip_ranges: &vip_ranges, max_backends: 16, local_node: None });
    assert!(unknown.backends.is_empty());
    assert!(
        matches!(
            &unknown.problems[..],
            [ConsulProblem::Instance { reason: InstanceProblem::LoopbackNodeUnknown(_), .. }]
        ),
        "{:?}",
        unknown.problems
    );
}

#[test]
fn too_many_instances_are_capped_at_the_limit() {
    let entries: Vec<HealthEntry> =
        (0..5).map(|i| entry(&format!("i{i}"), &format!("10.0.0.{}", i + 1), "", 80, &[])).collect();
    let reading = read_here(&entries, 3);
    assert_eq!(reading.backends.len(), 3);
    assert_eq!(reading.problems, [ConsulProblem::TooManyInstances { service: "web".into(), count: 5, max: 3 }]);
}

#[test]
fn connect_to_tags_are_declarations_of_the_instance() {
    let mut tagged = entry("a", "10.0.0.1", "", 80, &[]);
    tagged.service.tags = Some(Box::new(["connect_to=redis,db".into(), "connect_to=web".into(), "v2".into()]));
    let reading = read_here(&[tagged], 1024);
    let declared: Vec<&str> = reading.declarations["a"].iter().map(String::as_str).collect();
    assert_eq!(declared, ["db", "redis", "web"]);
}

#[test]
fn weights_come_from_weights_passing() {
    let mut heavy = entry("a", "10.0.0.1", "", 80, &[]);
    heavy.service.weights = Some(Weights { passing: 3 });
    let reading = read_here(&[heavy, entry("b", "10.0.0.2", "", 80, &[])], 1024);
    assert_eq!(reading.backends.iter().map(|b| b.weight).collect::<Vec<_>>(), [3, 1]);
}
