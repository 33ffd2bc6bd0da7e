//! What in Consul's answers Viking does not use, and why. The state machine logs each
//! problem once while it persists; tests match on the variants.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

use super::instances::{META_ALGORITHM, META_OUTLIER_PREFIX, META_PORT, META_PROTOCOL};
use crate::model::{BackendError, NameError, OutlierError, UnknownName};

/// Something Consul says that is skipped, or replaced by a default.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConsulProblem {
    /// An instance that is not a usable backend.
    #[error("consul service {service:?} instance {instance:?}: {reason}; instance skipped")]
    Instance {
        /// The Consul service.
        service: String,
        /// The instance id.
        instance: String,
        /// What is wrong with it.
        reason: InstanceProblem,
    },
    /// More passing instances than a service may have backends.
    #[error(
        "consul service {service:?}: {count} passing instances, more than limits.max_backends_per_service = {max}; \
         the first {max} by address are used"
    )]
    TooManyInstances {
        /// The Consul service.
        service: String,
        /// Its passing instances.
        count: usize,
        /// `limits.max_backends_per_service`.
        max: u16,
    },
    /// An instance whose `viking_*` meta differs from the first instance's.
    #[error(
        "consul service {service:?}: instance {instance:?} declares other viking_* meta than the others; \
         the first instance's are used"
    )]
    MetaDiffers {
        /// The Consul service.
        service: String,
        /// The instance id.
        instance: String,
    },
    /// `viking_port` is not a port.
    #[error("consul service {service:?}: meta {META_PORT} = {value:?} is not 1..=65535; service skipped")]
    PortMeta {
        /// The Consul service.
        service: String,
        /// The meta value.
        value: String,
    },
    /// Instances on different ports, and no `viking_port` to choose the VIP's.
    #[error(
        "consul service {service:?}: instances listen on different ports ({}); set meta {META_PORT} to choose \
         the VIP's port; service skipped",
        list(ports)
    )]
    PortsDiffer {
        /// The Consul service.
        service: String,
        /// The instances' ports.
        ports: Vec<u16>,
    },
    /// `viking_protocol` names no protocol.
    #[error("consul service {service:?}: meta {META_PROTOCOL} = {value:?}: {error}; service skipped")]
    ProtocolMeta {
        /// The Consul service.
        service: String,
        /// The meta value.
        value: String,
        /// The accepted names.
        error: UnknownName,
    },
    /// `viking_algorithm` names no algorithm.
    #[error("consul service {service:?}: meta {META_ALGORITHM} = {value:?}: {error}; round_robin used")]
    AlgorithmMeta {
        /// The Consul service.
        service: String,
        /// The meta value.
        value: String,
        /// The accepted names.
        error: UnknownName,
    },
    /// A `viking_outlier_<key>` value that is refused; the key keeps its default.
    #[error("consul service {service:?}: meta {META_OUTLIER_PREFIX}{key} = {value:?}: {error}; its default is used")]
    OutlierMeta {
        /// The Consul service.
        service: String,
        /// The key, without the prefix.
        key: String,
        /// The meta value.
        value: String,
        /// Why.
        error: OutlierMetaError,
    },
    /// `viking_outlier_*` values that disagree; every default is used.
    #[error(
        "consul service {service:?}: meta {META_OUTLIER_PREFIX}{}: {error}; the default ejection settings are used",
        error.key
    )]
    OutlierSettings {
        /// The Consul service.
        service: String,
        /// The key at fault and why.
        error: OutlierError,
    },
    /// Instances of the other address family than the service's VIP.
    #[error(
        "consul service {service:?}: instances {} are not of the VIP's address family ({vip}); skipped",
        list(instances)
    )]
    AddressFamily {
        /// The Consul service.
        service: String,
        /// Its VIP.
        vip: IpAddr,
        /// The instances' addresses.
        instances: Vec<SocketAddr>,
    },
    /// A service name that cannot name a Viking service.
    #[error("consul service name {service:?}: {error}; service skipped")]
    ServiceName {
        /// The Consul service.
        service: String,
        /// Why.
        error: NameError,
    },
    /// A VIP record in the KV that holds no VIP of the range.
    #[error("consul KV {key}: value {value:?} is not a VIP inside {range}; ignored")]
    VipRecord {
        /// The KV key.
        key: String,
        /// Its value as text.
        value: String,
        /// The range VIPs come from.
        range: IpNet,
    },
}

/// Why an instance is not a backend.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InstanceProblem {
    /// The address (the instance's, or its node's) is not an IP address.
    #[error("address {0:?} is not an IP address")]
    NotAnIp(String),
    /// The port is 0 or above 65535.
    #[error("port {0} is not 1..=65535")]
    Port(i64),
    /// A loopback address on another node than this host's.
    #[error("address {ip} is loopback on node {node:?}, which is not this host's Consul node {local:?}")]
    LoopbackElsewhere {
        /// The address.
        ip: IpAddr,
        /// The instance's node.
        node: String,
        /// This host's node.
        local: String,
    },
    /// A loopback address, and this host's node is unknown.
    #[error("address {0} is loopback and this host's Consul node is unknown")]
    LoopbackNodeUnknown(IpAddr),
    /// An address that cannot be a backend.
    #[error("address {addr}: {error}")]
    Backend {
        /// The address.
        addr: SocketAddr,
        /// Why.
        error: BackendError,
    },
}

/// Why a `viking_outlier_<key>` value is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OutlierMetaError {
    /// Not an integer.
    #[error("must be an integer")]
    NotAnInteger,
    /// Out of range, or an unknown key.
    #[error(transparent)]
    Invalid(#[from] OutlierError),
}

/// `a, b, c`.
fn list<T: ToString>(items: &[T]) -> String {
    items.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{NameError, OutlierDetection, UnknownName};

    /// The log lines operators know (and grep for) read as they did when they were strings.
    #[test]
    fn messages_name_the_service_the_meta_and_what_happens_instead() {
        let service = || "web".to_owned();
        let mut outlier = OutlierDetection::default();
        outlier.set("ejection_seconds", 60).unwrap();
        outlier.set("max_ejection_seconds", 30).unwrap();
        let cases = [
            (
                ConsulProblem::TooManyInstances { service: service(), count: 5, max: 3 },
                r#"consul service "web": 5 passing instances, more than limits.max_backends_per_service = 3; the first 3 by address are used"#,
            ),
            (
                ConsulProblem::MetaDiffers { service: service(), instance: "b".into() },
                r#"consul service "web": instance "b" declares other viking_* meta than the others; the first instance's are used"#,
            ),
            (
                ConsulProblem::PortMeta { service: service(), value: "0".into() },
                r#"consul service "web": meta viking_port = "0" is not 1..=65535; service skipped"#,
            ),
            (
                ConsulProblem::PortsDiffer { service: service(), ports: vec![1000, 2000] },
                r#"consul service "web": instances listen on different ports (1000, 2000); set meta viking_port to choose the VIP's port; service skipped"#,
            ),
            (
                ConsulProblem::ProtocolMeta {
                    service: service(),
                    value: "sctp".into(),
                    error: UnknownName { expected: vec!["tcp", "udp"] },
                },
                r#"consul service "web": meta viking_protocol = "sctp": must be "tcp" or "udp"; service skipped"#,
            ),
            (
                ConsulProblem::AlgorithmMeta {
                    service: service(),
                    value: "x".into(),
                    error: UnknownName { expected: vec!["a", "b"] },
                },
                r#"consul service "web": meta viking_algorithm = "x": must be "a" or "b"; round_robin used"#,
            ),
            (
                ConsulProblem::OutlierSettings { service: service(), error: outlier.check().unwrap_err() },
                r#"consul service "web": meta viking_outlier_max_ejection_seconds: must be at least ejection_seconds (60); the default ejection settings are used"#,
            ),
            (
                ConsulProblem::AddressFamily {
                    service: service(),
                    vip: "241.0.0.1".parse().unwrap(),
                    instances: vec!["[fd00::1]:80".parse().unwrap(), "[fd00::2]:80".parse().unwrap()],
                },
                r#"consul service "web": instances [fd00::1]:80, [fd00::2]:80 are not of the VIP's address family (241.0.0.1); skipped"#,
            ),
            (
                ConsulProblem::ServiceName { service: "a b".into(), error: NameError::Characters },
                r#"consul service name "a b": may only contain letters, digits, '-' and '_'; service skipped"#,
            ),
            (
                ConsulProblem::VipRecord {
                    key: "viking/services/web".into(),
                    value: "10.0.0.1".into(),
                    range: "241.0.0.0/8".parse().unwrap(),
                },
                r#"consul KV viking/services/web: value "10.0.0.1" is not a VIP inside 241.0.0.0/8; ignored"#,
            ),
        ];
        for (problem, message) in cases {
            assert_eq!(problem.to_string(), message);
        }
    }
}
