//! HTTP plumbing shared by the routes: query parameters, Consul's read
//! options (`dc`, `stale`/`consistent`, `index`, `wait`), error bodies, and
//! the `X-Consul-*` response headers.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};
use serde::Serialize;

use crate::blocking::Blocking;
use crate::duration;

/// The response type of every handler.
pub(crate) type HttpResponse = Response<Full<Bytes>>;

/// A failed request: status and a plain-text body, as Consul answers errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HttpError {
    status: StatusCode,
    body: String,
}

impl HttpError {
    pub(crate) fn new(status: StatusCode, body: impl Into<String>) -> Self {
        HttpError { status, body: body.into() }
    }

    pub(crate) fn bad_request(body: impl Into<String>) -> Self {
        HttpError::new(StatusCode::BAD_REQUEST, body)
    }

    pub(crate) fn forbidden(body: impl Into<String>) -> Self {
        HttpError::new(StatusCode::FORBIDDEN, body)
    }

    pub(crate) fn internal(body: impl Into<String>) -> Self {
        HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, body)
    }

    pub(crate) fn into_response(self) -> HttpResponse {
        text(self.status, self.body)
    }
}

/// A plain-text response.
pub(crate) fn text(status: StatusCode, body: impl Into<Bytes>) -> HttpResponse {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

/// A 200 JSON response with an already serialized body.
pub(crate) fn json_bytes(body: Vec<u8>) -> HttpResponse {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// A 200 JSON response.
pub(crate) fn json(value: &impl Serialize) -> Result<HttpResponse, HttpError> {
    Ok(json_bytes(encode(value)?))
}

/// Serializes a response body.
pub(crate) fn encode(value: &impl Serialize) -> Result<Vec<u8>, HttpError> {
    serde_json::to_vec(value).map_err(|err| HttpError::internal(format!("encoding response: {err}")))
}

/// Decoded query parameters, in order, repeated keys kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    pub(crate) fn parse(raw: Option<&str>) -> Self {
        let pairs = form_urlencoded::parse(raw.unwrap_or_default().as_bytes()).into_owned().collect();
        Params { pairs }
    }

    /// The first value of `key` (Go's `Query().Get`).
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.all(key).next()
    }

    /// Every value of `key`.
    pub(crate) fn all<'a>(&'a self, key: &str) -> impl Iterator<Item = &'a str> {
        self.pairs.iter().filter(move |(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// Whether `key` is present at all (`?recurse` counts).
    pub(crate) fn has(&self, key: &str) -> bool {
        self.all(key).next().is_some()
    }

    /// A Go `strconv.ParseBool` flag where a bare `?flag` means true.
    pub(crate) fn flag(&self, key: &str) -> Result<bool, HttpError> {
        match self.get(key) {
            None => Ok(false),
            Some("" | "1" | "t" | "T" | "true" | "TRUE" | "True") => Ok(true),
            Some("0" | "f" | "F" | "false" | "FALSE" | "False") => Ok(false),
            Some(_) => Err(HttpError::bad_request(format!("Invalid value for ?{key}"))),
        }
    }

    /// An unsigned integer parameter.
    pub(crate) fn number(&self, key: &str, error: &str) -> Result<Option<u64>, HttpError> {
        self.get(key).map(|value| value.parse::<u64>().map_err(|_| HttpError::bad_request(error))).transpose()
    }

    /// Rejects `?dc=` naming another datacenter, as Consul does when it
    /// cannot forward the request.
    pub(crate) fn check_datacenter(&self, datacenter: &str) -> Result<(), HttpError> {
        match self.get("dc") {
            Some(dc) if !dc.is_empty() && dc != datacenter => Err(HttpError::internal("No path to datacenter")),
            _ => Ok(()),
        }
    }
}

/// The consistency mode a read was served with (`X-Consul-Effective-Consistency`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Consistency {
    Leader,
    Stale,
    Consistent,
}

/// Options common to every read endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReadOptions {
    pub blocking: Blocking,
    pub consistency: Consistency,
}

impl ReadOptions {
    /// Parses `dc`, `stale`, `consistent`, `wait` and `index` with Consul's
    /// error messages. `?filter=` is refused loudly rather than ignored.
    pub(crate) fn parse(params: &Params, datacenter: &str) -> Result<Self, HttpError> {
        params.check_datacenter(datacenter)?;
        if params.has("filter") {
            return Err(HttpError::bad_request("consul-test-server does not implement ?filter"));
        }
        let consistency = match (params.has("stale"), params.has("consistent")) {
            (true, true) => {
                return Err(HttpError::bad_request("Cannot specify ?stale with ?consistent, conflicting semantics."));
            }
            (true, false) => Consistency::Stale,
            (false, true) => Consistency::Consistent,
            (false, false) => Consistency::Leader,
        };
        let wait = match params.get("wait").filter(|w| !w.is_empty()) {
            Some(text) => Some(duration::parse(text).ok_or_else(|| HttpError::bad_request("Invalid wait time"))?),
            None => None,
        };
        let min_index = match params.get("index").filter(|i| !i.is_empty()) {
            Some(text) => text.parse::<u64>().map_err(|_| HttpError::bad_request("Invalid index"))?,
            None => 0,
        };
        Ok(ReadOptions { blocking: Blocking { min_index, wait }, consistency })
    }
}

/// Adds the query metadata headers Consul sets on every read.
pub(crate) fn with_read_meta(response: HttpResponse, index: u64, consistency: Consistency) -> HttpResponse {
    let mut response = with_leader_meta(response);
    let headers = response.headers_mut();
    headers.insert("x-consul-index", HeaderValue::from(index));
    let consistency = match consistency {
        Consistency::Leader => "leader",
        Consistency::Stale => "stale",
        Consistency::Consistent => "consistent",
    };
    headers.insert("x-consul-effective-consistency", HeaderValue::from_static(consistency));
    response
}

/// Adds `X-Consul-KnownLeader` and `X-Consul-LastContact` only, which is
/// all a read that is not a blocking query (a read-only transaction) gets.
pub(crate) fn with_leader_meta(mut response: HttpResponse) -> HttpResponse {
    let headers = response.headers_mut();
    headers.insert("x-consul-knownleader", HeaderValue::from_static("true"));
    headers.insert("x-consul-lastcontact", HeaderValue::from_static("0"));
    response
}
