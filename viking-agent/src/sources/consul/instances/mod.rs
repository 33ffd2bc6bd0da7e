//! From Consul's view of a service (its passing instances) to a Viking service: which
//! instances are usable backends, on which logical port clients reach the VIP, with which
//! protocol and algorithm. Bad data never reaches the kernel: an unusable instance is
//! skipped with a message naming the service, the instance and the value.
//!
//! A loopback instance address (what `consul agent -dev` and `nomad agent -dev` register)
//! means "this node": it is a backend only on the host of that node, so it is accepted when
//! the instance is registered on this host's own Consul node and refused everywhere else.
//!
//! This file reads the instances; `meta` reads the `viking_*` meta keys into the service's
//! shape.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, SocketAddr},
};

mod meta;

pub use self::meta::{META_ALGORITHM, META_OUTLIER_PREFIX, META_PORT, META_PREFIX, META_PROTOCOL, ServiceShape};
use self::meta::{ServiceShapeDecl, shape};
use super::{
    problems::{ConsulProblem, InstanceProblem},
    wire::HealthEntry,
};
use crate::model::{BackendSpec, Frontend, Service, ServiceName, VipRanges, check_backend_addr};

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
            reading.declarations.insert(instance.id.to_string(), connect_to);
        }
        let address: &str = if instance.address.is_empty() { &entry.node.address } else { &instance.address };
        let Ok(ip) = address.parse::<IpAddr>().map(|ip| ip.to_canonical()) else {
            problem(&instance.id, InstanceProblem::NotAnIp(address.to_owned()));
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
        declared.push((instance.id.to_string(), ServiceShapeDecl::from_meta(instance.meta.as_deref())));
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

/// The Viking service for a Consul service with its VIP. Backends of the other address
/// family than the VIP are dropped; the problem says which.
pub fn service(
    name: ServiceName,
    vip: IpAddr,
    shape: &ServiceShape,
    backends: &[BackendSpec],
) -> (Service, Option<ConsulProblem>) {
    let (same_family, dropped): (Vec<&BackendSpec>, Vec<&BackendSpec>) =
        backends.iter().partition(|b| b.addr.is_ipv4() == vip.is_ipv4());
    // Exactly as long as needed: every service is kept, and a pushed vector takes room for
    // four backends.
    let mut kept = Vec::with_capacity(same_family.len());
    kept.extend(same_family.into_iter().copied());
    let problem = (!dropped.is_empty()).then(|| ConsulProblem::AddressFamily {
        service: name.to_string(),
        vip,
        instances: dropped.iter().map(|b| b.addr).collect(),
    });
    let service = Service {
        name,
        frontend: Frontend { vip, port: shape.port, protocol: shape.protocol },
        algorithm: shape.algorithm,
        affinity_secs: 0,
        outlier: shape.outlier,
        backends: kept,
    };
    (service, problem)
}

#[cfg(test)]
mod tests;
