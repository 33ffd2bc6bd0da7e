//! Catalog writes and reads: `Catalog.Register` / `Catalog.Deregister`
//! semantics, idempotent updates (an identical re-registration keeps its
//! `ModifyIndex`), the per-service indexes that health and catalog
//! queries report, and the nodes and checks table indexes, which move only
//! when a node or a check is actually created, changed or deleted.

use std::collections::{BTreeMap, BTreeSet};

use super::records::{CheckFields, CheckRecord, NodeFields, NodeRecord, ServiceFields, ServiceRecord};
use super::validate::CatalogError;
use super::{Store, Topic, Touched};
use crate::wire::{DeregisterRequest, RegisterRequest, Status};

impl Store {
    /// Applies a `PUT /v1/catalog/register` body; returns the write's index.
    pub(crate) fn register(&mut self, request: RegisterRequest, touched: &mut Touched) -> Result<u64, CatalogError> {
        let plan = self.plan(request)?;
        let index = self.next_index();
        self.upsert_node(&plan.node, plan.node_fields, plan.skip_node_update, index, touched);
        if let Some(service) = plan.service {
            self.upsert_service(&plan.node, service, index, touched);
        }
        for check in plan.checks {
            self.upsert_check(&plan.node, check, index, touched);
        }
        Ok(index)
    }

    /// Applies a `PUT /v1/catalog/deregister` body: the whole node when only
    /// `Node` is given, else the named service and/or check. Removing what
    /// does not exist succeeds, as in Consul.
    pub(crate) fn deregister(
        &mut self,
        request: &DeregisterRequest,
        touched: &mut Touched,
    ) -> Result<u64, CatalogError> {
        if request.node.is_empty() {
            return Err(CatalogError::MissingNode);
        }
        self.check_datacenter(&request.datacenter)?;
        let index = self.next_index();
        if request.service_id.is_empty() && request.check_id.is_empty() {
            self.delete_node(&request.node, index, touched);
        } else {
            if !request.service_id.is_empty() {
                self.delete_service(&request.node, &request.service_id, index, touched);
            }
            if !request.check_id.is_empty() {
                self.delete_check(&request.node, &request.check_id, index, touched);
            }
        }
        Ok(index)
    }

    /// Sets the status (and, when given, the output) of every check with this
    /// ID, on whichever nodes have one. Returns how many checks exist with the
    /// ID; zero means none was found.
    pub(crate) fn update_check(
        &mut self,
        check_id: &str,
        status: Status,
        output: Option<&str>,
        touched: &mut Touched,
    ) -> usize {
        let Some(nodes) = self.check_nodes.get(check_id).cloned() else {
            return 0;
        };
        let index = self.next_index();
        for node in &nodes {
            let Some(record) = self.nodes.get(node).and_then(|n| n.checks.get(check_id)) else {
                continue;
            };
            let mut fields = record.fields.clone();
            fields.status = status;
            if let Some(output) = output {
                fields.output = output.to_owned();
            }
            self.upsert_check(node, fields, index, touched);
        }
        nodes.len()
    }

    /// The index `/v1/catalog/services` reports.
    pub(crate) fn services_index(&self) -> u64 {
        self.services_table_index
    }

    /// Every service name with the union of its instances' tags, from the listing kept up
    /// to date by every write (a read costs the names, not the instances).
    pub(crate) fn service_tags(&self) -> BTreeMap<&str, Vec<&str>> {
        self.service_list.names.iter().map(|(name, listed)| (name.as_str(), listed.tags())).collect()
    }

    /// The index catalog and health queries for `name` report: the last
    /// change to any instance, its checks or its node. For a name never
    /// registered it is the services table's index, as nothing more
    /// specific exists.
    pub(crate) fn service_index(&self, name: &str) -> u64 {
        self.service_indexes.get(&name.to_lowercase()).copied().unwrap_or(self.services_table_index)
    }

    /// The instances of a service (case-insensitive name), ordered by node
    /// then service ID. Cost is proportional to the instances, not the catalog.
    pub(crate) fn instances_of(&self, name: &str) -> impl Iterator<Item = (&NodeRecord, &ServiceRecord)> {
        self.instances.get(&name.to_lowercase()).into_iter().flat_map(|keys| self.resolve(keys))
    }

    fn resolve<'a>(
        &'a self,
        keys: &'a BTreeSet<(String, String)>,
    ) -> impl Iterator<Item = (&'a NodeRecord, &'a ServiceRecord)> {
        keys.iter().filter_map(|(node, id)| {
            let node = self.nodes.get(node)?;
            Some((node, node.services.get(id)?))
        })
    }

    fn upsert_node(&mut self, name: &str, fields: NodeFields, skip_update: bool, index: u64, touched: &mut Touched) {
        let Some(node) = self.nodes.get_mut(name) else {
            let record = NodeRecord {
                name: name.to_owned(),
                fields,
                create_index: index,
                modify_index: index,
                services: BTreeMap::new(),
                checks: BTreeMap::new(),
            };
            self.nodes.insert(name.to_owned(), record);
            self.touch_nodes(index, touched);
            touched.insert(node_services(name));
            return;
        };
        if skip_update || node.fields == fields {
            return;
        }
        node.fields = fields;
        node.modify_index = index;
        // Every service on the node reports the node's address and metadata.
        for affected in node.names_affected_by("") {
            self.bump_service(affected, index, touched);
        }
        self.touch_nodes(index, touched);
        touched.insert(node_services(name));
    }

    fn upsert_service(&mut self, node_name: &str, fields: ServiceFields, index: u64, touched: &mut Touched) {
        let Some(node) = self.nodes.get_mut(node_name) else {
            return;
        };
        let new_name = fields.name.to_lowercase();
        let id = fields.id.clone();
        let listing = (fields.name.clone(), fields.tags.clone());
        let old = match node.services.get_mut(&id) {
            Some(existing) if existing.fields == fields => return,
            Some(existing) => {
                let old = std::mem::replace(&mut existing.fields, fields);
                existing.modify_index = index;
                Some(old)
            }
            None => {
                let record = ServiceRecord { fields, create_index: index, modify_index: index };
                node.services.insert(id.clone(), record);
                None
            }
        };
        let key = (node_name.to_owned(), id);
        if let Some(old) = old {
            self.service_list.remove(&old.name, &old.tags);
            let old_name = old.name.to_lowercase();
            if old_name != new_name {
                self.remove_instance(&old_name, &key);
                self.bump_service(old_name, index, touched);
            }
        }
        self.service_list.add(&listing.0, &listing.1);
        self.instances.entry(new_name.clone()).or_default().insert(key);
        self.bump_service(new_name, index, touched);
        self.touch_service_list(index, touched);
        touched.insert(node_services(node_name));
    }

    fn upsert_check(&mut self, node_name: &str, fields: CheckFields, index: u64, touched: &mut Touched) {
        let Some(node) = self.nodes.get_mut(node_name) else {
            return;
        };
        let mut affected = node.names_affected_by(&fields.service_id);
        let previous_service = match node.checks.get(&fields.id) {
            Some(existing) if existing.fields == fields => return,
            Some(existing) => Some(existing.fields.service_id.clone()),
            None => None,
        };
        // A check moved between services (or node level) affects both.
        if let Some(previous) = previous_service.filter(|p| *p != fields.service_id) {
            affected.extend(node.names_affected_by(&previous));
        }
        match node.checks.get_mut(&fields.id) {
            Some(existing) => {
                existing.fields = fields;
                existing.modify_index = index;
            }
            None => {
                let id = fields.id.clone();
                let record = CheckRecord { fields, create_index: index, modify_index: index };
                node.checks.insert(id.clone(), record);
                self.check_nodes.entry(id).or_default().insert(node_name.to_owned());
            }
        }
        for name in affected {
            self.bump_service(name, index, touched);
        }
        self.touch_checks(index, touched);
        touched.insert(node_checks(node_name));
    }

    fn delete_node(&mut self, name: &str, index: u64, touched: &mut Touched) {
        let Some(node) = self.nodes.remove(name) else {
            return;
        };
        self.touch_nodes(index, touched);
        touched.insert(node_services(name));
        for check_id in node.checks.keys() {
            self.forget_check(check_id, name);
        }
        if !node.checks.is_empty() {
            self.touch_checks(index, touched);
            touched.insert(node_checks(name));
        }
        if node.services.is_empty() {
            return;
        }
        for (id, service) in &node.services {
            self.service_list.remove(&service.fields.name, &service.fields.tags);
            let lower = service.fields.name.to_lowercase();
            self.remove_instance(&lower, &(name.to_owned(), id.clone()));
            self.bump_service(lower, index, touched);
        }
        self.touch_service_list(index, touched);
    }

    fn delete_service(&mut self, node_name: &str, service_id: &str, index: u64, touched: &mut Touched) {
        let Some(node) = self.nodes.get_mut(node_name) else {
            return;
        };
        let Some(service) = node.services.remove(service_id) else {
            return;
        };
        // A service's checks go with it.
        let check_ids: Vec<String> =
            node.checks.values().filter(|c| c.fields.service_id == service_id).map(|c| c.fields.id.clone()).collect();
        for check_id in &check_ids {
            node.checks.remove(check_id);
        }
        for check_id in &check_ids {
            self.forget_check(check_id, node_name);
        }
        if !check_ids.is_empty() {
            self.touch_checks(index, touched);
            touched.insert(node_checks(node_name));
        }
        self.service_list.remove(&service.fields.name, &service.fields.tags);
        let lower = service.fields.name.to_lowercase();
        self.remove_instance(&lower, &(node_name.to_owned(), service_id.to_owned()));
        self.bump_service(lower, index, touched);
        self.touch_service_list(index, touched);
        touched.insert(node_services(node_name));
    }

    fn delete_check(&mut self, node_name: &str, check_id: &str, index: u64, touched: &mut Touched) {
        let Some(node) = self.nodes.get_mut(node_name) else {
            return;
        };
        let Some(check) = node.checks.remove(check_id) else {
            return;
        };
        let affected = node.names_affected_by(&check.fields.service_id);
        self.forget_check(check_id, node_name);
        for name in affected {
            self.bump_service(name, index, touched);
        }
        self.touch_checks(index, touched);
        touched.insert(node_checks(node_name));
    }

    fn remove_instance(&mut self, lower_name: &str, key: &(String, String)) {
        if let Some(set) = self.instances.get_mut(lower_name) {
            set.remove(key);
            if set.is_empty() {
                self.instances.remove(lower_name);
            }
        }
    }

    fn forget_check(&mut self, check_id: &str, node_name: &str) {
        if let Some(nodes) = self.check_nodes.get_mut(check_id) {
            nodes.remove(node_name);
            if nodes.is_empty() {
                self.check_nodes.remove(check_id);
            }
        }
    }

    fn bump_service(&mut self, lower_name: String, index: u64, touched: &mut Touched) {
        self.service_indexes.insert(lower_name.clone(), index);
        touched.insert(Topic::Service(lower_name));
    }

    fn touch_service_list(&mut self, index: u64, touched: &mut Touched) {
        self.services_table_index = index;
        touched.insert(Topic::ServiceList);
    }

    fn touch_nodes(&mut self, index: u64, touched: &mut Touched) {
        self.nodes_table_index = index;
        touched.insert(Topic::Nodes);
    }

    fn touch_checks(&mut self, index: u64, touched: &mut Touched) {
        self.checks_table_index = index;
        touched.insert(Topic::Checks);
    }
}

/// What wakes `/v1/catalog/node/:node`: Consul's watch set there is the node's record and
/// its services (`nodeServices`: the node's `FirstWatch` and the services-by-node
/// iterator), so writes on other nodes move the index but wake nobody waiting on this one.
fn node_services(node: &str) -> Topic {
    Topic::NodeServices(node.to_lowercase())
}

/// What wakes `/v1/health/node/:node`: the node's checks (`NodeChecks`: the checks-by-node
/// iterator's watch channel).
fn node_checks(node: &str) -> Topic {
    Topic::NodeChecks(node.to_lowercase())
}
