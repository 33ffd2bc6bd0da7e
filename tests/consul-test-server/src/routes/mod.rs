//! Request pipeline and routing: log the request, apply faults, match the
//! endpoint, check the ACL token, then run the handler.

mod agent;
mod agent_self;
mod catalog;
mod health;
mod kv;
mod render;
mod txn;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, RETRY_AFTER};
use hyper::{Method, Request, StatusCode};
use percent_encoding::percent_decode_str;
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use crate::acl::{self, Access};
use crate::faults::Verdict;
use crate::http::{HttpError, HttpResponse, Params, json, text};
use crate::request_log::RequestRecord;
use crate::shared::Shared;
use agent::CheckAction;

/// Largest request body read; KV values have their own, smaller limit.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// Serves one request.
pub(crate) async fn handle(shared: &Shared, request: Request<Incoming>) -> HttpResponse {
    let (parts, body) = request.into_parts();
    let params = Params::parse(parts.uri.query());
    let token = acl::token(&params, &parts.headers);
    shared.log.push(RequestRecord {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().unwrap_or_default().to_owned(),
        index_param: params.get("index").map(str::to_owned),
        wait_param: params.get("wait").map(str::to_owned),
        token: token.clone(),
        received_at: Instant::now(),
    });
    if let Verdict::Respond { status, body, retry_after } = shared.faults.apply(parts.uri.path()).await {
        let mut response = text(status, body);
        if let Some(seconds) = retry_after {
            response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(seconds));
        }
        return response;
    }
    let request =
        RequestHead { method: &parts.method, raw_path: parts.uri.path(), params: &params, token: token.as_deref() };
    serve(shared, request, body).await.unwrap_or_else(HttpError::into_response)
}

/// The parts of a request the router needs.
struct RequestHead<'a> {
    method: &'a Method,
    raw_path: &'a str,
    params: &'a Params,
    token: Option<&'a str>,
}

/// The endpoints this server implements.
enum Endpoint<'a> {
    CatalogRegister,
    CatalogDeregister,
    CatalogServices,
    CatalogService(&'a str),
    CatalogNodes,
    CatalogNode(&'a str),
    CatalogDatacenters,
    HealthService(&'a str),
    HealthNode(&'a str),
    HealthState(&'a str),
    AgentCheck(CheckAction, &'a str),
    AgentSelf,
    Kv(&'a str),
    Txn,
    StatusLeader,
}

async fn serve(shared: &Shared, request: RequestHead<'_>, body: Incoming) -> Result<HttpResponse, HttpError> {
    let path =
        percent_decode_str(request.raw_path).decode_utf8().map_err(|_| HttpError::bad_request("Invalid URL path"))?;
    let (endpoint, access) = route(request.method, &path)?;
    if let Some(acl) = &shared.acl {
        acl.authorize(request.token, access)?;
    }
    let params = request.params;
    match endpoint {
        Endpoint::CatalogRegister => catalog::register(shared, params, &read_body(body).await?),
        Endpoint::CatalogDeregister => catalog::deregister(shared, params, &read_body(body).await?),
        Endpoint::CatalogServices => catalog::services(shared, params).await,
        Endpoint::CatalogService(name) => catalog::service(shared, params, name).await,
        Endpoint::CatalogNodes => catalog::nodes(shared, params).await,
        Endpoint::CatalogNode(name) => catalog::node(shared, params, name).await,
        Endpoint::CatalogDatacenters => catalog::datacenters(shared),
        Endpoint::HealthService(name) => health::service(shared, params, name).await,
        Endpoint::HealthNode(name) => health::node(shared, params, name).await,
        Endpoint::HealthState(state) => health::state(shared, params, state).await,
        Endpoint::AgentCheck(action, id) => agent::check(shared, params, action, id, &read_body(body).await?),
        Endpoint::AgentSelf => agent_self::agent_self(shared),
        Endpoint::Kv(key) if *request.method == Method::GET => kv::get(shared, params, key).await,
        Endpoint::Kv(key) if *request.method == Method::PUT => kv::put(shared, params, key, read_body(body).await?),
        Endpoint::Kv(key) => kv::delete(shared, params, key),
        Endpoint::Txn => txn::txn(shared, params, request.token, &read_body(body).await?),
        // Consul answers with its Raft leader's address; clients only check it is non-empty.
        Endpoint::StatusLeader => json(&"127.0.0.1:8300"),
    }
}

/// Matches a decoded path to an endpoint and the access it needs.
fn route<'a>(method: &Method, path: &'a str) -> Result<(Endpoint<'a>, Access), HttpError> {
    let allow = |allowed: &[Method], endpoint: Endpoint<'a>, access: Access| {
        if allowed.contains(method) {
            Ok((endpoint, access))
        } else {
            Err(HttpError::new(StatusCode::METHOD_NOT_ALLOWED, format!("method {method} not allowed")))
        }
    };
    let get = [Method::GET];
    let put = [Method::PUT];
    if let Some(key) = path.strip_prefix("/v1/kv/") {
        let access = if method == Method::GET { Access::Read } else { Access::Write };
        return allow(&[Method::GET, Method::PUT, Method::DELETE], Endpoint::Kv(key), access);
    }
    if let Some(name) = path.strip_prefix("/v1/health/service/") {
        return allow(&get, Endpoint::HealthService(name), Access::Read);
    }
    if let Some(name) = path.strip_prefix("/v1/health/node/") {
        return allow(&get, Endpoint::HealthNode(name), Access::Read);
    }
    if let Some(state) = path.strip_prefix("/v1/health/state/") {
        return allow(&get, Endpoint::HealthState(state), Access::Read);
    }
    if let Some(name) = path.strip_prefix("/v1/catalog/service/") {
        return allow(&get, Endpoint::CatalogService(name), Access::Read);
    }
    if let Some(name) = path.strip_prefix("/v1/catalog/node/") {
        return allow(&get, Endpoint::CatalogNode(name), Access::Read);
    }
    if let Some(rest) = path.strip_prefix("/v1/agent/check/") {
        let actions = [
            ("pass/", CheckAction::Pass),
            ("warn/", CheckAction::Warn),
            ("fail/", CheckAction::Fail),
            ("update/", CheckAction::Update),
        ];
        for (prefix, action) in actions {
            if let Some(id) = rest.strip_prefix(prefix) {
                return allow(&put, Endpoint::AgentCheck(action, id), Access::Write);
            }
        }
    }
    match path {
        "/v1/catalog/register" => allow(&put, Endpoint::CatalogRegister, Access::Write),
        "/v1/catalog/deregister" => allow(&put, Endpoint::CatalogDeregister, Access::Write),
        "/v1/catalog/services" => allow(&get, Endpoint::CatalogServices, Access::Read),
        "/v1/catalog/nodes" => allow(&get, Endpoint::CatalogNodes, Access::Read),
        // `agent:read`: read access in this server's two-level ACL model.
        "/v1/agent/self" => allow(&get, Endpoint::AgentSelf, Access::Read),
        // Checked per operation by the handler, as `Txn.Apply`'s preCheck does.
        "/v1/txn" => allow(&put, Endpoint::Txn, Access::Open),
        "/v1/catalog/datacenters" => allow(&get, Endpoint::CatalogDatacenters, Access::Open),
        "/v1/status/leader" => allow(&get, Endpoint::StatusLeader, Access::Open),
        _ => Err(HttpError::new(StatusCode::NOT_FOUND, "404 page not found\n")),
    }
}

async fn read_body(body: Incoming) -> Result<Bytes, HttpError> {
    match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) => Err(HttpError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("reading request body: {err}"))),
    }
}

/// Decodes a JSON request body with Consul's error message.
fn decode_json<T: DeserializeOwned>(body: &Bytes) -> Result<T, HttpError> {
    serde_json::from_slice(body).map_err(|err| HttpError::bad_request(format!("Request decode failed: {err}")))
}
