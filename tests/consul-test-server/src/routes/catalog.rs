//! `/v1/catalog/*` (<https://developer.hashicorp.com/consul/api-docs/catalog>).
//!
//! `GET /v1/catalog/nodes` (<https://developer.hashicorp.com/consul/api-docs/catalog#list-nodes>)
//! lists every node ordered by name, with the nodes table's index, which
//! moves when a node is created, changed or deleted, but not when a service
//! is registered on a node that stays the same (`state.Store.Nodes`).
//!
//! `GET /v1/catalog/node/:node` (<https://developer.hashicorp.com/consul/api-docs/catalog#retrieve-map-of-services-for-a-node>)
//! is the node and its services by ID, with the highest index of the nodes and services
//! tables (`state.Store.NodeServices`: `maxIndexTxn(tx, "nodes", "services")`), so any
//! node or service write anywhere moves it; an unknown node is `null`, not 404, with index
//! 0, which Consul's blocking loop reports as 1. A blocking query waits on the node's own
//! record and services only (its watch set), so a write elsewhere moves the index without
//! waking it: a query sent after such a write returns at once, one already waiting does not.

use bytes::Bytes;

use super::{decode_json, render};
use crate::blocking;
use crate::http::{HttpError, HttpResponse, Params, ReadOptions, encode, json, json_bytes, with_read_meta};
use crate::shared::Shared;
use crate::state::{CatalogError, Topic};
use crate::wire::{DeregisterRequest, RegisterRequest};

/// `PUT /v1/catalog/register` → `true`.
pub(super) fn register(shared: &Shared, params: &Params, body: &Bytes) -> Result<HttpResponse, HttpError> {
    params.check_datacenter(&shared.datacenter)?;
    let request: RegisterRequest = decode_json(body)?;
    shared.write(|store, touched| store.register(request, touched)).map_err(catalog_error)?;
    json(&true)
}

/// `PUT /v1/catalog/deregister` → `true`.
pub(super) fn deregister(shared: &Shared, params: &Params, body: &Bytes) -> Result<HttpResponse, HttpError> {
    params.check_datacenter(&shared.datacenter)?;
    let request: DeregisterRequest = decode_json(body)?;
    shared.write(|store, touched| store.deregister(&request, touched)).map_err(catalog_error)?;
    json(&true)
}

/// `GET /v1/catalog/services` → `{"name": ["tag", …]}`, blocking.
pub(super) async fn services(shared: &Shared, params: &Params) -> Result<HttpResponse, HttpError> {
    let options = ReadOptions::parse(params, &shared.datacenter)?;
    let (index, body) = blocking::run(
        shared,
        Topic::ServiceList,
        options.blocking,
        |store| store.services_index(),
        |store| encode(&store.service_tags()),
    )
    .await;
    Ok(with_read_meta(json_bytes(body?), index, options.consistency))
}

/// `GET /v1/catalog/service/:service`, with `?tag=` (repeatable), blocking.
pub(super) async fn service(shared: &Shared, params: &Params, name: &str) -> Result<HttpResponse, HttpError> {
    let options = ReadOptions::parse(params, &shared.datacenter)?;
    if name.is_empty() {
        return Err(HttpError::bad_request("Missing service name"));
    }
    let tags: Vec<String> = params.all("tag").map(str::to_lowercase).collect();
    let (index, body) = blocking::run(
        shared,
        Topic::Service(name.to_lowercase()),
        options.blocking,
        |store| store.service_index(name),
        |store| {
            let entries: Vec<_> = store
                .instances_of(name)
                .filter(|(_, service)| render::has_tags(service, &tags))
                .map(|(node, service)| render::catalog_entry(node, service))
                .collect();
            encode(&entries)
        },
    )
    .await;
    Ok(with_read_meta(json_bytes(body?), index, options.consistency))
}

/// `GET /v1/catalog/nodes` → `[Node, …]`, blocking.
pub(super) async fn nodes(shared: &Shared, params: &Params) -> Result<HttpResponse, HttpError> {
    let options = ReadOptions::parse(params, &shared.datacenter)?;
    let (index, body) = blocking::run(
        shared,
        Topic::Nodes,
        options.blocking,
        |store| store.nodes_index(),
        |store| {
            let nodes: Vec<_> = store.nodes_sorted().into_iter().map(render::node_out).collect();
            encode(&nodes)
        },
    )
    .await;
    Ok(with_read_meta(json_bytes(body?), index, options.consistency))
}

/// `GET /v1/catalog/node/:node` → `{"Node": Node, "Services": {"id": Service, …}}` or `null`, blocking.
pub(super) async fn node(shared: &Shared, params: &Params, name: &str) -> Result<HttpResponse, HttpError> {
    let options = ReadOptions::parse(params, &shared.datacenter)?;
    if name.is_empty() {
        return Err(HttpError::bad_request("Missing node name"));
    }
    let (index, body) = blocking::run(
        shared,
        Topic::NodeServices(name.to_lowercase()),
        options.blocking,
        |store| store.node(name).map_or(0, |_| store.nodes_index().max(store.services_index())),
        |store| encode(&store.node(name).map(render::node_services)),
    )
    .await;
    Ok(with_read_meta(json_bytes(body?), index, options.consistency))
}

/// `GET /v1/catalog/datacenters`: only this server's.
pub(super) fn datacenters(shared: &Shared) -> Result<HttpResponse, HttpError> {
    json(&[&shared.datacenter])
}

/// Consul reports failed RPCs as 500 with the error text.
fn catalog_error(err: CatalogError) -> HttpError {
    HttpError::internal(err.to_string())
}
