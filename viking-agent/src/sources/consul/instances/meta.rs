//! The `viking_*` meta of a service's instances: its keys, and the shape of the service
//! they declare (the port clients use on the VIP, protocol, algorithm, outlier ejection).
//! A bad value is reported with the service, the key and the value.

use std::collections::BTreeMap;

use viking_common::Algorithm;

use super::super::problems::{ConsulProblem, OutlierMetaError};
use crate::model::{Named, OutlierDetection, Protocol};

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

/// What one instance's meta declares.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct ServiceShapeDecl {
    port: Option<String>,
    protocol: Option<String>,
    algorithm: Option<String>,
    /// `viking_outlier_*` entries, prefix removed.
    outlier: Vec<(String, String)>,
}

impl ServiceShapeDecl {
    pub(super) fn from_meta(meta: Option<&BTreeMap<String, String>>) -> Self {
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
pub(super) fn shape(
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
