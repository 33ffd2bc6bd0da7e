//! `/v1/health/service/:service`, `/v1/health/node/:node` and `/v1/health/state/:state`
//! (<https://developer.hashicorp.com/consul/api-docs/health>).
//!
//! `/v1/health/node/:node` (<https://developer.hashicorp.com/consul/api-docs/health#list-checks-for-node>)
//! lists the node's checks, its own and its services', ordered by check ID, with the
//! checks table's index (`state.Store.NodeChecks`: `catalogChecksMaxIndex`), so a check
//! written on any node moves it; a blocking query waits on this node's checks only (the
//! watch channel of the checks-by-node iterator). An unknown node has no checks: `[]`.
//!
//! `/v1/health/state/:state` (<https://developer.hashicorp.com/consul/api-docs/health#list-checks-in-state>)
//! lists the checks in `passing`, `warning` or `critical` (any case, as
//! Consul's status index lower-cases), or every check for `any`, with the
//! checks table's index (`ChecksInState`). Consul does not validate the
//! state: an unknown one is an empty list, not an error
//! (hashicorp/consul#757); only an empty one is refused, with `Missing check state`.

use super::render;
use crate::blocking;
use crate::http::{HttpError, HttpResponse, Params, ReadOptions, encode, json_bytes, with_read_meta};
use crate::shared::Shared;
use crate::state::Topic;
use crate::wire::Status;

/// Instances of a service with their node and checks. `?passing` keeps only
/// instances whose every check passes, `?tag=` (repeatable) requires tags.
/// An unknown service is `[]`, not 404. Blocking.
pub(super) async fn service(shared: &Shared, params: &Params, name: &str) -> Result<HttpResponse, HttpError> {
    let options = ReadOptions::parse(params, &shared.datacenter)?;
    if name.is_empty() {
        return Err(HttpError::bad_request("Missing service name"));
    }
    let passing_only = params.flag("passing")?;
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
                .filter_map(|(node, service)| render::health_entry(node, service, passing_only))
                .collect();
            encode(&entries)
        },
    )
    .await;
    Ok(with_read_meta(json_bytes(body?), index, options.consistency))
}

/// The checks of one node. Blocking.
pub(super) async fn node(shared: &Shared, params: &Params, name: &str) -> Result<HttpResponse, HttpError> {
    let options = ReadOptions::parse(params, &shared.datacenter)?;
    if name.is_empty() {
        return Err(HttpError::bad_request("Missing node name"));
    }
    let (index, body) = blocking::run(
        shared,
        Topic::NodeChecks(name.to_lowercase()),
        options.blocking,
        |store| store.checks_index(),
        |store| {
            let checks: Vec<_> =
                store.checks_of(name).into_iter().map(|(node, check)| render::check_entry(node, check)).collect();
            encode(&checks)
        },
    )
    .await;
    Ok(with_read_meta(json_bytes(body?), index, options.consistency))
}

/// Which checks a `/v1/health/state/:state` query lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StateFilter {
    Any,
    Only(Status),
    /// A state no check can be in.
    Nothing,
}

impl StateFilter {
    fn parse(state: &str) -> Self {
        // Only the exact `any` is the wildcard; statuses match case-insensitively.
        if state == "any" {
            return StateFilter::Any;
        }
        Status::parse(&state.to_lowercase()).map_or(StateFilter::Nothing, StateFilter::Only)
    }

    fn admits(self, status: Status) -> bool {
        match self {
            StateFilter::Any => true,
            StateFilter::Only(wanted) => status == wanted,
            StateFilter::Nothing => false,
        }
    }
}

/// The checks in a state, as health entries render checks. Blocking.
pub(super) async fn state(shared: &Shared, params: &Params, state: &str) -> Result<HttpResponse, HttpError> {
    let options = ReadOptions::parse(params, &shared.datacenter)?;
    if state.is_empty() {
        return Err(HttpError::bad_request("Missing check state"));
    }
    let filter = StateFilter::parse(state);
    let (index, body) = blocking::run(
        shared,
        Topic::Checks,
        options.blocking,
        |store| store.checks_index(),
        |store| {
            let checks: Vec<_> = store
                .checks_where(|status| filter.admits(status))
                .into_iter()
                .map(|(node, check)| render::check_entry(node, check))
                .collect();
            encode(&checks)
        },
    )
    .await;
    Ok(with_read_meta(json_bytes(body?), index, options.consistency))
}
