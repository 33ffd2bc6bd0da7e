//! Validation of catalog registrations, with Consul's defaults and error
//! messages (`Catalog.Register` and the state store's checks).

use std::net::IpAddr;

use thiserror::Error;

use super::Store;
use super::records::{CheckFields, NodeFields, ServiceFields};
use crate::wire::{CheckDefinition, RegisterRequest, Status};

/// Why a catalog write was refused. The messages are Consul's.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CatalogError {
    /// The request named no node.
    #[error("Must provide node")]
    MissingNode,
    /// A node registration without an address.
    #[error("Must provide address if SkipNodeUpdate is not set")]
    MissingAddress,
    /// A node `ID` that is not a UUID.
    #[error("Bad node ID: {0:?} is not a UUID")]
    BadNodeId(String),
    /// A service without a name.
    #[error("Must provide service name with ID")]
    MissingServiceName,
    /// A service address of `0.0.0.0` or `::`.
    #[error("Invalid service address")]
    InvalidServiceAddress,
    /// A check with neither `CheckID` nor `Name`.
    #[error("Missing check ID")]
    MissingCheckId,
    /// A check whose `Node` is not the registered node.
    #[error("Check node {check_node:?} does not match the registered node {node:?}")]
    CheckNodeMismatch {
        /// The node the request registers.
        node: String,
        /// The node the check names.
        check_node: String,
    },
    /// A check whose `ServiceID` is not a service of its node.
    #[error("Missing service registration")]
    MissingService,
    /// A status other than passing, warning or critical.
    #[error("Invalid check status: {0:?}")]
    InvalidCheckStatus(String),
    /// A `Datacenter` other than the server's.
    #[error("No path to datacenter")]
    NoPathToDatacenter,
}

/// A validated registration, ready to apply.
pub(super) struct Plan {
    pub node: String,
    pub node_fields: NodeFields,
    pub skip_node_update: bool,
    pub service: Option<ServiceFields>,
    pub checks: Vec<CheckFields>,
}

impl Store {
    pub(super) fn check_datacenter(&self, datacenter: &str) -> Result<(), CatalogError> {
        if datacenter.is_empty() || datacenter == self.datacenter {
            Ok(())
        } else {
            Err(CatalogError::NoPathToDatacenter)
        }
    }

    /// Validates and normalizes a registration the way `Catalog.Register` does.
    pub(super) fn plan(&self, request: RegisterRequest) -> Result<Plan, CatalogError> {
        if request.node.is_empty() {
            return Err(CatalogError::MissingNode);
        }
        if request.address.is_empty() && !request.skip_node_update {
            return Err(CatalogError::MissingAddress);
        }
        if !request.id.is_empty() && !is_uuid(&request.id) {
            return Err(CatalogError::BadNodeId(request.id));
        }
        self.check_datacenter(&request.datacenter)?;

        let service = request.service.map(|s| {
            if s.service.is_empty() {
                return Err(CatalogError::MissingServiceName);
            }
            if s.address.parse::<IpAddr>().is_ok_and(|ip| ip.is_unspecified()) {
                return Err(CatalogError::InvalidServiceAddress);
            }
            Ok(ServiceFields {
                kind: s.kind,
                id: if s.id.is_empty() { s.service.clone() } else { s.id },
                name: s.service,
                tags: s.tags.unwrap_or_default(),
                address: s.address,
                tagged_addresses: s.tagged_addresses,
                meta: s.meta,
                port: s.port,
                weights: s.weights.map(|w| w.validated()).unwrap_or_default(),
                enable_tag_override: s.enable_tag_override,
            })
        });
        let service = service.transpose()?;

        let existing = self.nodes.get(&request.node);
        let service_exists = |id: &str| {
            service.as_ref().is_some_and(|s| s.id == id) || existing.is_some_and(|n| n.services.contains_key(id))
        };
        let checks = request
            .check
            .into_iter()
            .chain(request.checks.into_iter().flatten())
            .map(|check| {
                let fields = check_fields(&request.node, check)?;
                if !fields.service_id.is_empty() && !service_exists(&fields.service_id) {
                    return Err(CatalogError::MissingService);
                }
                Ok(fields)
            })
            .collect::<Result<Vec<_>, _>>()?;

        let datacenter = self.datacenter.clone();
        Ok(Plan {
            node: request.node,
            node_fields: NodeFields {
                id: request.id,
                address: request.address,
                datacenter,
                tagged_addresses: request.tagged_addresses,
                meta: request.node_meta,
            },
            skip_node_update: request.skip_node_update,
            service,
            checks,
        })
    }
}

/// Normalizes one check of a registration: defaults for `Node`, `CheckID`
/// (from `Name`) and `Status` (critical), as Consul applies them.
fn check_fields(node: &str, check: CheckDefinition) -> Result<CheckFields, CatalogError> {
    if !check.node.is_empty() && check.node != node {
        return Err(CatalogError::CheckNodeMismatch { node: node.to_owned(), check_node: check.node });
    }
    let id = if check.check_id.is_empty() { check.name.clone() } else { check.check_id };
    if id.is_empty() {
        return Err(CatalogError::MissingCheckId);
    }
    let status = if check.status.is_empty() {
        Status::Critical
    } else {
        Status::parse(&check.status).ok_or(CatalogError::InvalidCheckStatus(check.status))?
    };
    Ok(CheckFields {
        id,
        name: check.name,
        status,
        notes: check.notes,
        output: check.output,
        service_id: check.service_id,
        check_type: check.r#type,
    })
}

/// Whether `text` has the 8-4-4-4-12 hex layout Consul requires of node IDs.
fn is_uuid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    let lengths = [8, 4, 4, 4, 12];
    groups.len() == lengths.len()
        && groups
            .iter()
            .zip(lengths)
            .all(|(group, len)| group.len() == len && group.bytes().all(|b| b.is_ascii_hexdigit()))
}
