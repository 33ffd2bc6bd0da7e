//! Registrations made from Rust, for tests that seed the catalog without
//! going through HTTP. They are turned into the same request body
//! `PUT /v1/catalog/register` accepts and applied by the same code.

use std::collections::BTreeMap;

use crate::wire::{CheckDefinition, RegisterRequest, ServiceDefinition, Status, Weights, WeightsDefinition};

/// One service instance on one node, with its checks.
///
/// ```
/// use consul_test_server::{CheckSpec, Registration};
/// let web = Registration::new("host-a", "10.0.0.1", "web")
///     .id("web-1")
///     .port(8080)
///     .tag("v1")
///     .check(CheckSpec::passing("web-1-check"));
/// # let _ = web;
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Registration {
    /// Node name.
    pub node: String,
    /// Node address.
    pub address: String,
    /// Service name.
    pub service: String,
    /// Service ID; empty means the service name, as in Consul.
    pub id: String,
    /// Service port.
    pub port: u16,
    /// The service's own address; `None` leaves `Service.Address` empty so
    /// clients fall back to the node address.
    pub service_address: Option<String>,
    /// Service tags.
    pub tags: Vec<String>,
    /// Service metadata; empty is sent as absent (`null`, as Consul shows it).
    pub meta: BTreeMap<String, String>,
    /// DNS weights; `None` means Consul's default of 1/1.
    pub weights: Option<Weights>,
    /// Checks of the service.
    pub checks: Vec<CheckSpec>,
    /// Node-level checks, which count for every service on the node.
    pub node_checks: Vec<CheckSpec>,
}

impl Registration {
    /// A service `service` on node `node` at `address`.
    pub fn new(node: impl Into<String>, address: impl Into<String>, service: impl Into<String>) -> Self {
        Registration { node: node.into(), address: address.into(), service: service.into(), ..Registration::default() }
    }

    /// Sets the service ID.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        self
    }

    /// Sets the port.
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Gives the service its own address.
    pub fn service_address(mut self, address: impl Into<String>) -> Self {
        self.service_address = Some(address.into());
        self
    }

    /// Adds a tag.
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }

    /// Adds a metadata pair.
    pub fn meta(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.meta.insert(key.into(), value.into());
        self
    }

    /// Sets the weights.
    pub fn weights(mut self, passing: u32, warning: u32) -> Self {
        self.weights = Some(Weights { passing, warning });
        self
    }

    /// Adds a service-level check.
    pub fn check(mut self, check: CheckSpec) -> Self {
        self.checks.push(check);
        self
    }

    /// Adds a node-level check.
    pub fn node_check(mut self, check: CheckSpec) -> Self {
        self.node_checks.push(check);
        self
    }

    /// The equivalent `PUT /v1/catalog/register` body.
    pub(crate) fn into_request(self) -> RegisterRequest {
        let service_id = if self.id.is_empty() { self.service.clone() } else { self.id };
        let node_checks = self.node_checks.into_iter().map(|c| c.into_definition(""));
        let service_checks = self.checks.into_iter().map(|c| c.into_definition(&service_id));
        RegisterRequest {
            node: self.node,
            address: self.address,
            service: Some(ServiceDefinition {
                id: service_id.clone(),
                service: self.service,
                tags: Some(self.tags),
                address: self.service_address.unwrap_or_default(),
                meta: (!self.meta.is_empty()).then_some(self.meta),
                port: self.port,
                weights: self
                    .weights
                    .map(|w| WeightsDefinition { passing: i64::from(w.passing), warning: i64::from(w.warning) }),
                ..ServiceDefinition::default()
            }),
            checks: Some(node_checks.chain(service_checks).collect()),
            ..RegisterRequest::default()
        }
    }
}

/// A health check to register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckSpec {
    /// Check ID (unique per node).
    pub id: String,
    /// Check name; empty means the ID.
    pub name: String,
    /// Initial status.
    pub status: Status,
    /// Check output.
    pub output: String,
}

impl CheckSpec {
    /// A check with this ID and status.
    pub fn new(id: impl Into<String>, status: Status) -> Self {
        CheckSpec { id: id.into(), name: String::new(), status, output: String::new() }
    }

    /// A passing check.
    pub fn passing(id: impl Into<String>) -> Self {
        CheckSpec::new(id, Status::Passing)
    }

    /// A warning check.
    pub fn warning(id: impl Into<String>) -> Self {
        CheckSpec::new(id, Status::Warning)
    }

    /// A critical check.
    pub fn critical(id: impl Into<String>) -> Self {
        CheckSpec::new(id, Status::Critical)
    }

    /// Sets the name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Sets the output.
    pub fn output(mut self, output: impl Into<String>) -> Self {
        self.output = output.into();
        self
    }

    fn into_definition(self, service_id: &str) -> CheckDefinition {
        let name = if self.name.is_empty() { self.id.clone() } else { self.name };
        CheckDefinition {
            check_id: self.id,
            name,
            status: self.status.as_str().to_owned(),
            output: self.output,
            service_id: service_id.to_owned(),
            ..CheckDefinition::default()
        }
    }
}
