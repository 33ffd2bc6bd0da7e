//! From Consul's view of a service (its passing instances) to a Viking service: which
//! instances are usable backends, on which logical port clients reach the VIP, with which
//! protocol and algorithm. Bad data never reaches the kernel: an unusable instance is
//! skipped with a message naming the service, the instance and the value.
//!
//! A loopback instance address (what `consul agent -dev` and `nomad agent -dev` register)
//! means "this node": it is a backend only on the host of that node, so it is accepted when
//! the instance is registered on this host's own Consul node and refused everywhere else.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, SocketAddr},
};

use viking_common::Algorithm;

use super::{
    problems::{ConsulProblem, InstanceProblem, OutlierMetaError},
    wire::HealthEntry,
};
use crate::model::{BackendSpec, Frontend, Named, OutlierDetection, Protocol, Service, VipRanges, check_backend_addr};

/// What reading a service's instances depends on besides the instances.
#[derive(Clone, Copy, Debug)]
pub struct ReadContext<'a> {
    /// VIP ranges (a backend must be outside them).
    pub vip_ranges: &'a VipRanges,
    /// `limits.max_backends_per_service`.
    pub max_backends: u16,
    /// This host's Consul node: loopback instances registered on it are local backends.
    /// `None` when it is unknown (then every loopback instance is refused).
    pub local_node: Option<&'a str>,
}

/// The prefix of every instance meta key Viking reads.
pub const META_PREFIX: &str = "viking_";
/// Instance meta key: the port clients use on the VIP (`VIP:<viking_port>`).
pub const META_PORT: &str = "viking_port";
/// Instance meta key: `tcp` (default) or `udp`.
pub const META_PROTOCOL: &str = "viking_protocol";
/// Instance meta key: the load-balancing algorithm.
pub const META_ALGORITHM: &str = "viking_algorithm";
/// Prefix of the instance meta keys of outlier ejection (`viking_outlier_<key>`, with the
/// keys of `outlier` in a `[[service]]` table).
pub const META_OUTLIER_PREFIX: &str = "viking_outlier_";

/// The parts of a service taken from its instances.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceShape {
    /// Where clients connect on the VIP.
    pub port: u16,
    /// TCP or UDP.
    pub protocol: Protocol,
    /// How backends are picked.
    pub algorithm: Algorithm,
    /// When failing backends are ejected.
    pub outlier: OutlierDetection,
}

/// The outcome of reading one service's instances.
#[derive(Debug, Default)]
pub struct Reading {
    /// The shape, when the instances declare one consistently (or `None` with no instance).
    pub shape: Option<ServiceShape>,
    /// Usable backends, sorted by address.
    pub backends: Vec<BackendSpec>,
    /// `connect_to=<service>` tags, by instance id: the services that instance's container
    /// declares it uses.
    pub declarations: BTreeMap<String, BTreeSet<String>>,
    /// One per skipped instance or inconsistent declaration.
    pub problems: Vec<ConsulProblem>,
}

/// Tag prefix of a declared dependency (the original Viking design's `connect_to`).
pub const TAG_CONNECT_TO: &str = "connect_to=";

/// Reads the passing instances of service `name`.
pub fn read(name: &str, entries: &[HealthEntry], context: &ReadContext<'_>) -> Reading {
    let max_backends = context.max_backends;
    let mut reading = Reading::default();
    let mut problems = Vec::new();
    let mut problem = |instance: &str, reason: InstanceProblem| {
        problems.push(ConsulProblem::Instance { service: name.to_owned(), instance: instance.to_owned(), reason });
    };
    let mut backends: BTreeMap<SocketAddr, BackendSpec> = BTreeMap::new();
    let mut ports: BTreeMap<u16, usize> = BTreeMap::new();
    let mut declared: Vec<(String, ServiceShapeDecl)> = Vec::new();
    for entry in entries {
        let instance = &entry.service;
        let connect_to: BTreeSet<String> = instance
            .tags
            .iter()
            .flatten()
            .filter_map(|tag| tag.strip_prefix(TAG_CONNECT_TO))
            .flat_map(|list| list.split(','))
            .map(str::trim)
            .filter(|target| !target.is_empty())
            .map(str::to_owned)
            .collect();
        if !connect_to.is_empty() {
            reading.declarations.insert(instance.id.clone(), connect_to);
        }
        let address = if instance.address.is_empty() { &entry.node.address } else { &instance.address };
        let Ok(ip) = address.parse::<IpAddr>().map(|ip| ip.to_canonical()) else {
            problem(&instance.id, InstanceProblem::NotAnIp(address.clone()));
            continue;
        };
        let Ok(port) = u16::try_from(instance.port).map_err(drop).and_then(|p| if p == 0 { Err(()) } else { Ok(p) })
        else {
            problem(&instance.id, InstanceProblem::Port(instance.port));
            continue;
        };
        if ip.is_loopback() && !is_local(&entry.node.node, context.local_node) {
            let why = match context.local_node {
                Some(local) => {
                    InstanceProblem::LoopbackElsewhere { ip, node: entry.node.node.clone(), local: local.to_owned() }
                }
                None => InstanceProblem::LoopbackNodeUnknown(ip),
            };
            problem(&instance.id, why);
            continue;
        }
        let addr = SocketAddr::new(ip, port);
        // The VIP's family is not known yet; it is checked when the service is built.
        if let Err(error) = check_backend_addr(addr, context.vip_ranges) {
            problem(&instance.id, InstanceProblem::Backend { addr, error });
            continue;
        }
        let weight = instance.weights.map_or(1, |w| w.passing).clamp(1, i64::from(BackendSpec::MAX_WEIGHT)) as u16;
        backends.insert(addr, BackendSpec { addr, weight });
        *ports.entry(port).or_default() += 1;
        declared.push((instance.id.clone(), ServiceShapeDecl::from_meta(instance.meta.as_ref())));
    }
    reading.problems = problems;
    let mut backends: Vec<BackendSpec> = backends.into_values().collect();
    if backends.len() > usize::from(max_backends) {
        reading.problems.push(ConsulProblem::TooManyInstances {
            service: name.to_owned(),
            count: backends.len(),
            max: max_backends,
        });
        backends.truncate(usize::from(max_backends));
    }
    reading.shape = shape(name, &declared, &ports, &mut reading.problems);
    reading.backends = backends;
    reading
}

/// Whether `node` is this host's Consul node (node names compare case-insensitively in
/// Consul).
fn is_local(node: &str, local: Option<&str>) -> bool {
    local.is_some_and(|local| local.eq_ignore_ascii_case(node))
}

/// What one instance's meta declares.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct ServiceShapeDecl {
    port: Option<String>,
    protocol: Option<String>,
    algorithm: Option<String>,
    /// `viking_outlier_*` entries, prefix removed.
    outlier: Vec<(String, String)>,
}

impl ServiceShapeDecl {
    fn from_meta(meta: Option<&BTreeMap<String, String>>) -> Self {
        let get = |key: &str| meta.and_then(|m| m.get(key)).cloned();
        let outlier = meta
            .into_iter()
            .flatten()
            .filter_map(|(key, value)| Some((key.strip_prefix(META_OUTLIER_PREFIX)?.to_owned(), value.clone())))
            .collect();
        Self { port: get(META_PORT), protocol: get(META_PROTOCOL), algorithm: get(META_ALGORITHM), outlier }
    }
}

/// Outlier ejection from `viking_outlier_*` meta: a bad entry is reported and its default
/// kept; a combination that does not hold keeps every default.
fn outlier_from_meta(name: &str, declared: &[(String, String)], problems: &mut Vec<ConsulProblem>) -> OutlierDetection {
    let mut outlier = OutlierDetection::default();
    for (key, text) in declared {
        let result = match text.parse::<i64>() {
            Ok(value) => outlier.set(key, value).map_err(OutlierMetaError::from),
            Err(_) => Err(OutlierMetaError::NotAnInteger),
        };
        if let Err(error) = result {
            problems.push(ConsulProblem::OutlierMeta {
                service: name.to_owned(),
                key: key.clone(),
                value: text.clone(),
                error,
            });
        }
    }
    outlier.check().unwrap_or_else(|error| {
        problems.push(ConsulProblem::OutlierSettings { service: name.to_owned(), error });
        OutlierDetection::default()
    })
}

/// The logical port is `viking_port` from the instances' meta, which must agree; without
/// it, the port all instances share. Protocol and algorithm come from meta too.
fn shape(
    name: &str,
    declared: &[(String, ServiceShapeDecl)],
    ports: &BTreeMap<u16, usize>,
    problems: &mut Vec<ConsulProblem>,
) -> Option<ServiceShape> {
    let first = &declared.first()?.1;
    let service = || name.to_owned();
    if let Some((id, _)) = declared.iter().find(|(_, d)| d != first) {
        problems.push(ConsulProblem::MetaDiffers { service: service(), instance: id.clone() });
    }
    let port = match &first.port {
        Some(text) => match text.parse::<u16>() {
            Ok(port) if port != 0 => port,
            _ => {
                problems.push(ConsulProblem::PortMeta { service: service(), value: text.clone() });
                return None;
            }
        },
        None if ports.len() == 1 => *ports.keys().next()?,
        None => {
            problems.push(ConsulProblem::PortsDiffer { service: service(), ports: ports.keys().copied().collect() });
            return None;
        }
    };
    let written = |text: &Option<String>| text.clone().unwrap_or_default();
    let protocol = match Protocol::parse_or_default(first.protocol.as_deref()) {
        Ok(protocol) => protocol,
        Err(error) => {
            problems.push(ConsulProblem::ProtocolMeta { service: service(), value: written(&first.protocol), error });
            return None;
        }
    };
    let algorithm = Algorithm::parse_or_default(first.algorithm.as_deref()).unwrap_or_else(|error| {
        problems.push(ConsulProblem::AlgorithmMeta { service: service(), value: written(&first.algorithm), error });
        Algorithm::default()
    });
    let outlier = outlier_from_meta(name, &first.outlier, problems);
    Some(ServiceShape { port, protocol, algorithm, outlier })
}

/// The Viking service for a Consul service with its VIP. Backends of the other address
/// family than the VIP are dropped; the problem says which.
pub fn service(
    name: &str,
    vip: IpAddr,
    shape: &ServiceShape,
    backends: &[BackendSpec],
) -> (Service, Option<ConsulProblem>) {
    let (kept, dropped): (Vec<BackendSpec>, Vec<BackendSpec>) =
        backends.iter().partition(|b| b.addr.is_ipv4() == vip.is_ipv4());
    let problem = (!dropped.is_empty()).then(|| ConsulProblem::AddressFamily {
        service: name.to_owned(),
        vip,
        instances: dropped.iter().map(|b| b.addr).collect(),
    });
    let service = Service {
        name: name.to_owned(),
        frontend: Frontend { vip, port: shape.port, protocol: shape.protocol },
        algorithm: shape.algorithm,
        affinity_secs: 0,
        outlier: shape.outlier,
        backends: kept,
    };
    (service, problem)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        model::BackendError,
        sources::consul::wire::{Node, ServiceInstance, Weights},
    };

    fn entry(id: &str, node_address: &str, address: &str, port: i64, meta: &[(&str, &str)]) -> HealthEntry {
        HealthEntry {
            node: Node { node: format!("node-{id}"), address: node_address.into() },
            service: ServiceInstance {
                id: id.into(),
                service: "web".into(),
                address: address.into(),
                port,
                meta: Some(meta.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect()),
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
        let unknown =
            read("web", &[here], &ReadContext { vip_ranges: &vip_ranges, max_backends: 16, local_node: None });
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
        tagged.service.tags = Some(vec!["connect_to=redis,db".into(), "connect_to=web".into(), "v2".into()]);
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
}
