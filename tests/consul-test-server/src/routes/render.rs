//! Builds Consul's response shapes from catalog records.

use std::collections::BTreeMap;

use crate::state::{CheckRecord, NodeRecord, ServiceRecord};
use crate::wire::{
    CatalogServiceOut, CheckOut, Empty, HealthEntryOut, NodeOut, NodeServicesOut, ProxyOut, ServiceOut, Status,
};

static NO_META: BTreeMap<String, String> = BTreeMap::new();

/// Whether a service has every wanted tag; Consul compares tags case-insensitively.
pub(super) fn has_tags(service: &ServiceRecord, wanted_lowercase: &[String]) -> bool {
    wanted_lowercase.iter().all(|want| service.fields.tags.iter().any(|tag| tag.to_lowercase() == *want))
}

/// One `/v1/health/service` element, or `None` when `passing_only` and some
/// check (node-level ones included) is not passing. Warning is not passing.
pub(super) fn health_entry<'a>(
    node: &'a NodeRecord,
    service: &'a ServiceRecord,
    passing_only: bool,
) -> Option<HealthEntryOut<'a>> {
    let checks: Vec<&CheckRecord> = node.checks_of(&service.fields.id).collect();
    if passing_only && checks.iter().any(|check| check.fields.status != Status::Passing) {
        return None;
    }
    Some(HealthEntryOut {
        node: node_out(node),
        service: service_out(service),
        checks: checks.into_iter().map(|check| check_out(node, Some(service), check)).collect(),
    })
}

/// One `/v1/catalog/service` element.
pub(super) fn catalog_entry<'a>(node: &'a NodeRecord, service: &'a ServiceRecord) -> CatalogServiceOut<'a> {
    let fields = &service.fields;
    CatalogServiceOut {
        id: &node.fields.id,
        node: &node.name,
        address: &node.fields.address,
        datacenter: &node.fields.datacenter,
        tagged_addresses: node.fields.tagged_addresses.as_ref(),
        node_meta: node.fields.meta.as_ref(),
        service_kind: &fields.kind,
        service_id: &fields.id,
        service_name: &fields.name,
        service_tags: &fields.tags,
        service_address: &fields.address,
        service_tagged_addresses: fields.tagged_addresses.as_ref(),
        service_weights: fields.weights,
        service_meta: fields.meta.as_ref().unwrap_or(&NO_META),
        service_port: fields.port,
        service_socket_path: "",
        service_enable_tag_override: fields.enable_tag_override,
        service_proxy: ProxyOut::default(),
        service_connect: Empty {},
        create_index: service.create_index,
        modify_index: service.modify_index,
    }
}

/// One `/v1/health/state/:state` element: the check as health entries show
/// it, with its service's name and tags when it belongs to one.
pub(super) fn check_entry<'a>(node: &'a NodeRecord, check: &'a CheckRecord) -> CheckOut<'a> {
    check_out(node, node.services.get(&check.fields.service_id), check)
}

/// One `/v1/catalog/nodes` element, and the `Node` of a health entry.
pub(super) fn node_out(node: &NodeRecord) -> NodeOut<'_> {
    NodeOut {
        id: &node.fields.id,
        node: &node.name,
        address: &node.fields.address,
        datacenter: &node.fields.datacenter,
        tagged_addresses: node.fields.tagged_addresses.as_ref(),
        meta: node.fields.meta.as_ref(),
        create_index: node.create_index,
        modify_index: node.modify_index,
    }
}

/// The `/v1/catalog/node/:node` answer for a node.
pub(super) fn node_services(node: &NodeRecord) -> NodeServicesOut<'_> {
    NodeServicesOut {
        node: node_out(node),
        services: node.services.iter().map(|(id, service)| (id.as_str(), service_out(service))).collect(),
    }
}

fn service_out(service: &ServiceRecord) -> ServiceOut<'_> {
    let fields = &service.fields;
    ServiceOut {
        kind: &fields.kind,
        id: &fields.id,
        service: &fields.name,
        tags: &fields.tags,
        // Empty when the service has no address of its own: clients then use the node's.
        address: &fields.address,
        tagged_addresses: fields.tagged_addresses.as_ref(),
        meta: fields.meta.as_ref(),
        port: fields.port,
        weights: fields.weights,
        enable_tag_override: fields.enable_tag_override,
        proxy: ProxyOut::default(),
        connect: Empty {},
        create_index: service.create_index,
        modify_index: service.modify_index,
    }
}

fn check_out<'a>(node: &'a NodeRecord, service: Option<&'a ServiceRecord>, check: &'a CheckRecord) -> CheckOut<'a> {
    let fields = &check.fields;
    let (service_name, service_tags): (&str, &[String]) = match service {
        Some(service) if !fields.service_id.is_empty() => (&service.fields.name, &service.fields.tags),
        _ => ("", &[]),
    };
    CheckOut {
        node: &node.name,
        check_id: &fields.id,
        name: &fields.name,
        status: fields.status,
        notes: &fields.notes,
        output: &fields.output,
        service_id: &fields.service_id,
        service_name,
        service_tags,
        r#type: &fields.check_type,
        interval: "",
        timeout: "",
        exposed_port: 0,
        definition: Empty {},
        create_index: check.create_index,
        modify_index: check.modify_index,
    }
}
