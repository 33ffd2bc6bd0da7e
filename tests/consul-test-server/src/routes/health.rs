//! `/v1/health/service/:service` (<https://developer.hashicorp.com/consul/api-docs/health>).

use super::render;
use crate::blocking;
use crate::http::{HttpError, HttpResponse, Params, ReadOptions, encode, json_bytes, with_read_meta};
use crate::shared::Shared;
use crate::state::Topic;

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
