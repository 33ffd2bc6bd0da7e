//! Catalog records: nodes with their services and checks, each with the
//! Raft indexes that created and last modified it.

use std::collections::BTreeMap;

use crate::wire::{ServiceAddress, Status, StringMap, Weights};

/// The node fields a registration sets (everything but the indexes).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NodeFields {
    pub id: String,
    pub address: String,
    pub datacenter: String,
    pub tagged_addresses: Option<StringMap>,
    pub meta: Option<StringMap>,
}

/// A catalog node with its services and checks.
#[derive(Debug)]
pub(crate) struct NodeRecord {
    pub name: String,
    pub fields: NodeFields,
    pub create_index: u64,
    pub modify_index: u64,
    pub services: BTreeMap<String, ServiceRecord>,
    pub checks: BTreeMap<String, CheckRecord>,
}

impl NodeRecord {
    /// Checks that apply to the service `service_id`: the node-level ones
    /// (empty `ServiceID`) first, then the service's own, as Consul lists them.
    pub(crate) fn checks_of<'a>(&'a self, service_id: &'a str) -> impl Iterator<Item = &'a CheckRecord> {
        let node_level = self.checks.values().filter(|c| c.fields.service_id.is_empty());
        let own = self.checks.values().filter(move |c| c.fields.service_id == service_id);
        node_level.chain(own)
    }

    pub(super) fn clamp_indexes(&mut self, index: u64) {
        let clamp = |value: &mut u64| *value = (*value).min(index);
        clamp(&mut self.create_index);
        clamp(&mut self.modify_index);
        for service in self.services.values_mut() {
            clamp(&mut service.create_index);
            clamp(&mut service.modify_index);
        }
        for check in self.checks.values_mut() {
            clamp(&mut check.create_index);
            clamp(&mut check.modify_index);
        }
    }

    /// Lower-cased names of the services a check on this node affects.
    pub(super) fn names_affected_by(&self, service_id: &str) -> Vec<String> {
        self.services
            .values()
            .filter(|s| service_id.is_empty() || s.fields.id == service_id)
            .map(|s| s.fields.name.to_lowercase())
            .collect()
    }
}

/// The service fields a registration sets.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ServiceFields {
    pub kind: String,
    pub id: String,
    pub name: String,
    pub tags: Vec<String>,
    pub address: String,
    pub tagged_addresses: Option<BTreeMap<String, ServiceAddress>>,
    pub meta: Option<StringMap>,
    pub port: u16,
    pub weights: Weights,
    pub enable_tag_override: bool,
}

/// A service instance on a node.
#[derive(Debug)]
pub(crate) struct ServiceRecord {
    pub fields: ServiceFields,
    pub create_index: u64,
    pub modify_index: u64,
}

/// The check fields a registration or status update sets.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CheckFields {
    pub id: String,
    pub name: String,
    pub status: Status,
    pub notes: String,
    pub output: String,
    pub service_id: String,
    pub check_type: String,
}

/// A health check on a node, node-level when `service_id` is empty.
#[derive(Debug)]
pub(crate) struct CheckRecord {
    pub fields: CheckFields,
    pub create_index: u64,
    pub modify_index: u64,
}
