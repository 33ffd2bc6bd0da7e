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

use super::wire::HealthEntry;
use crate::model::{
    BackendSpec, Frontend, OutlierDetection, Protocol, Service, VipRanges, check_backend_addr, parse_or_default,
};

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
    /// One message per skipped instance or inconsistent declaration.
    pub problems: Vec<String>,
}

/// Tag prefix of a declared dependency (the original Viking design's `connect_to`).
pub const TAG_CONNECT_TO: &str = "connect_to=";

/// Reads the passing instances of service `name`.
pub fn read(name: &str, entries: &[HealthEntry], context: &ReadContext<'_>) -> Reading {
    let max_backends = context.max_backends;
    let mut reading = Reading::default();
    let mut problems = Vec::new();
    let mut problem = |instance: &str, what: String| {
        problems.push(format!("consul service {name:?} instance {instance:?}: {what}; instance skipped"))
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
            problem(&instance.id, format!("address {address:?} is not an IP address"));
            continue;
        };
        let Ok(port) = u16::try_from(instance.port).map_err(drop).and_then(|p| if p == 0 { Err(()) } else { Ok(p) })
        else {
            problem(&instance.id, format!("port {} is not 1..=65535", instance.port));
            continue;
        };
        if ip.is_loopback() && !is_local(&entry.node.node, context.local_node) {
            let why = match context.local_node {
                Some(local) => format!(
                    "address {ip} is loopback on node {:?}, which is not this host's Consul node {local:?}",
                    entry.node.node
                ),
                None => format!("address {ip} is loopback and this host's Consul node is unknown"),
            };
            problem(&instance.id, why);
            continue;
        }
        let addr = SocketAddr::new(ip, port);
        // The VIP's family is not known yet; it is checked when the service is built.
        if let Err(reason) = check_backend_addr(addr, context.vip_ranges) {
            problem(&instance.id, format!("address {addr}: {reason}"));
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
        reading.problems.push(format!(
            "consul service {name:?}: {} passing instances, more than limits.max_backends_per_service = {max_backends}; \
             the first {max_backends} by address are used",
            backends.len()
        ));
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
fn outlier_from_meta(name: &str, declared: &[(String, String)], problems: &mut Vec<String>) -> OutlierDetection {
    let mut outlier = OutlierDetection::default();
    for (key, text) in declared {
        let result = match text.parse::<i64>() {
            Ok(value) => outlier.set(key, value).map_err(|err| err.reason),
            Err(_) => Err("must be an integer".to_owned()),
        };
        if let Err(reason) = result {
            problems.push(format!(
                "consul service {name:?}: meta {META_OUTLIER_PREFIX}{key} = {text:?}: {reason}; its default is used"
            ));
        }
    }
    outlier.check().unwrap_or_else(|err| {
        problems.push(format!(
            "consul service {name:?}: meta {META_OUTLIER_PREFIX}{}: {}; the default ejection settings are used",
            err.key, err.reason
        ));
        OutlierDetection::default()
    })
}

/// The logical port is `viking_port` from the instances' meta, which must agree; without
/// it, the port all instances share. Protocol and algorithm come from meta too.
fn shape(
    name: &str,
    declared: &[(String, ServiceShapeDecl)],
    ports: &BTreeMap<u16, usize>,
    problems: &mut Vec<String>,
) -> Option<ServiceShape> {
    let first = &declared.first()?.1;
    if let Some((id, _)) = declared.iter().find(|(_, d)| d != first) {
        problems.push(format!(
            "consul service {name:?}: instance {id:?} declares other viking_* meta than the others; the first instance's are used"
        ));
    }
    let port = match &first.port {
        Some(text) => match text.parse::<u16>() {
            Ok(port) if port != 0 => port,
            _ => {
                problems.push(format!(
                    "consul service {name:?}: meta {META_PORT} = {text:?} is not 1..=65535; service skipped"
                ));
                return None;
            }
        },
        None if ports.len() == 1 => *ports.keys().next()?,
        None => {
            let list: Vec<String> = ports.keys().map(ToString::to_string).collect();
            problems.push(format!(
                "consul service {name:?}: instances listen on different ports ({}); set meta {META_PORT} to choose the VIP's port; service skipped",
                list.join(", ")
            ));
            return None;
        }
    };
    let written = |text: &Option<String>| text.clone().unwrap_or_default();
    let protocol: Protocol = match parse_or_default(first.protocol.as_deref()) {
        Ok(protocol) => protocol,
        Err(reason) => {
            let text = written(&first.protocol);
            problems
                .push(format!("consul service {name:?}: meta {META_PROTOCOL} = {text:?}: {reason}; service skipped"));
            return None;
        }
    };
    let algorithm = parse_or_default(first.algorithm.as_deref()).unwrap_or_else(|reason| {
        let text = written(&first.algorithm);
        problems.push(format!("consul service {name:?}: meta {META_ALGORITHM} = {text:?}: {reason}; round_robin used"));
        Algorithm::default()
    });
    let outlier = outlier_from_meta(name, &first.outlier, problems);
    Some(ServiceShape { port, protocol, algorithm, outlier })
}

/// The Viking service for a Consul service with its VIP. Backends of the other address
/// family than the VIP are dropped; the message says which.
pub fn service(name: &str, vip: IpAddr, shape: &ServiceShape, backends: &[BackendSpec]) -> (Service, Option<String>) {
    let (kept, dropped): (Vec<BackendSpec>, Vec<BackendSpec>) =
        backends.iter().partition(|b| b.addr.is_ipv4() == vip.is_ipv4());
    let problem = (!dropped.is_empty()).then(|| {
        let list: Vec<String> = dropped.iter().map(|b| b.addr.to_string()).collect();
        format!(
            "consul service {name:?}: instances {} are not of the VIP's address family ({vip}); skipped",
            list.join(", ")
        )
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
    use crate::sources::consul::wire::{Node, ServiceInstance, Weights};

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
        assert_eq!(reading.problems.len(), 1, "{:?}", reading.problems);
        assert!(reading.problems[0].contains("viking_outlier_ejection_seconds = \"ten\""), "{:?}", reading.problems);

        let off = [("viking_outlier_consecutive_failures", "0")];
        let reading = read_here(&[entry("a", "10.0.0.1", "", 80, &off)], 1024);
        assert_eq!(reading.shape.unwrap().outlier.policy(), viking_common::OutlierPolicy::default(), "0 turns it off");
    }

    #[test]
    fn different_ports_without_meta_skip_the_service_with_a_reason() {
        let entries = [entry("a", "10.0.0.1", "", 1000, &[]), entry("b", "10.0.0.2", "", 2000, &[])];
        let reading = read_here(&entries, 1024);
        assert_eq!(reading.shape, None);
        assert!(reading.problems[0].contains("different ports (1000, 2000)"), "{:?}", reading.problems);
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
        let text = reading.problems.join("\n");
        for needle in [
            "\"noip\": address \"web.local\"",
            "\"zero\": port 0",
            "\"huge\": port 70000",
            "\"vip\": address 240.0.0.9:80: inside the VIP ranges",
            "\"loop\": address 127.0.0.1 is loopback on node \"node-loop\", which is not this host's Consul node",
            "\"multi\": address 224.0.0.1:80: not a unicast",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
    }

    #[test]
    fn a_loopback_instance_is_a_backend_only_on_its_own_node() {
        let mut here = entry("dev", "127.0.0.1", "", 8080, &[]);
        here.node.node = "LOCAL-NODE".into();
        let elsewhere = entry("other", "127.0.0.1", "127.0.0.1", 8080, &[]);
        let reading = read_here(&[here.clone(), elsewhere.clone()], 1024);
        assert_eq!(reading.backends.iter().map(|b| b.addr.to_string()).collect::<Vec<_>>(), ["127.0.0.1:8080"]);
        assert_eq!(reading.problems.len(), 1, "{:?}", reading.problems);
        assert!(reading.problems[0].contains("\"other\": address 127.0.0.1 is loopback on node \"node-other\""));
        let vip_ranges = VipRanges::default();
        let unknown =
            read("web", &[here], &ReadContext { vip_ranges: &vip_ranges, max_backends: 16, local_node: None });
        assert!(unknown.backends.is_empty());
        assert!(unknown.problems[0].contains("this host's Consul node is unknown"), "{:?}", unknown.problems);
    }

    #[test]
    fn too_many_instances_are_capped_at_the_limit() {
        let entries: Vec<HealthEntry> =
            (0..5).map(|i| entry(&format!("i{i}"), &format!("10.0.0.{}", i + 1), "", 80, &[])).collect();
        let reading = read_here(&entries, 3);
        assert_eq!(reading.backends.len(), 3);
        assert!(reading.problems[0].contains("limits.max_backends_per_service = 3"));
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
