//! `/v1/kv/:key` (<https://developer.hashicorp.com/consul/api-docs/kv>).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use hyper::StatusCode;

use crate::blocking;
use crate::http::{HttpError, HttpResponse, Params, ReadOptions, encode, json, json_bytes, text, with_read_meta};
use crate::shared::Shared;
use crate::state::{KvDelete, KvRecord, Store, Topic};
use crate::wire::KvEntryOut;

/// Consul's limit on a value's size.
const MAX_VALUE_BYTES: usize = 512 * 1024;

/// Reads one key, a prefix (`?recurse`) or key names (`?keys`, with
/// `?separator=`). Missing data is 404 with the index headers. Blocking.
pub(super) async fn get(shared: &Shared, params: &Params, key: &str) -> Result<HttpResponse, HttpError> {
    let options = ReadOptions::parse(params, &shared.datacenter)?;
    let (index, response) = if params.has("keys") {
        let separator = params.get("separator").unwrap_or_default();
        blocking::run(shared, Topic::Kv, options.blocking, |s| s.kv_prefix_index(key), |s| list_keys(s, key, separator))
            .await
    } else if params.has("recurse") {
        blocking::run(
            shared,
            Topic::Kv,
            options.blocking,
            |s| s.kv_prefix_index(key),
            |s| {
                let entries: Vec<_> = s.kv_range(key).map(|(k, r)| entry(k, r)).collect();
                if entries.is_empty() { Ok(not_found()) } else { json(&entries) }
            },
        )
        .await
    } else {
        if key.is_empty() {
            return Err(HttpError::bad_request("Missing key name"));
        }
        let raw = params.has("raw");
        blocking::run(
            shared,
            Topic::Kv,
            options.blocking,
            |s| s.kv_key_index(key),
            |s| match s.kv_get(key) {
                None => Ok(not_found()),
                Some(record) if raw => Ok(text(StatusCode::OK, record.value.clone())),
                Some(record) => json(&[entry(key, record)]),
            },
        )
        .await
    };
    Ok(with_read_meta(response?, index, options.consistency))
}

/// Writes a key; `?cas=` makes it a check-and-set, `?flags=` sets the flags.
/// Answers `true` or `false`.
pub(super) fn put(shared: &Shared, params: &Params, key: &str, body: Bytes) -> Result<HttpResponse, HttpError> {
    params.check_datacenter(&shared.datacenter)?;
    if key.is_empty() {
        return Err(HttpError::bad_request("Missing key name"));
    }
    if params.has("acquire") || params.has("release") {
        return Err(HttpError::bad_request("consul-test-server does not implement sessions (?acquire, ?release)"));
    }
    let flags = params.number("flags", "Invalid flags")?.unwrap_or(0);
    let cas = params.number("cas", "Invalid cas value")?;
    if body.len() > MAX_VALUE_BYTES {
        return Err(HttpError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("Request body({} bytes) too large, max size: {MAX_VALUE_BYTES} bytes", body.len()),
        ));
    }
    let written = shared.write(|store, touched| store.kv_put(key, body.to_vec(), flags, cas, touched));
    json(&written)
}

/// Deletes a key, a prefix (`?recurse`) or, with `?cas=`, a key only if
/// unchanged. Answers `true` or `false`.
pub(super) fn delete(shared: &Shared, params: &Params, key: &str) -> Result<HttpResponse, HttpError> {
    params.check_datacenter(&shared.datacenter)?;
    let recurse = params.has("recurse");
    if !recurse && key.is_empty() {
        return Err(HttpError::bad_request("Missing key name"));
    }
    // As in Consul, `?cas` wins over `?recurse`.
    let mode = match params.number("cas", "Invalid cas value")? {
        Some(cas) => KvDelete::Cas(cas),
        None if recurse => KvDelete::Tree,
        None => KvDelete::Key,
    };
    let deleted = shared.write(|store, touched| store.kv_delete(key, mode, touched));
    json(&deleted)
}

fn entry<'a>(key: &'a str, record: &KvRecord) -> KvEntryOut<'a> {
    KvEntryOut {
        lock_index: record.lock_index,
        key,
        flags: record.flags,
        value: (!record.value.is_empty()).then(|| STANDARD.encode(&record.value)),
        create_index: record.create_index,
        modify_index: record.modify_index,
    }
}

/// Key names under `prefix`, cut after the first `separator` past the prefix
/// and deduplicated. No match is 404, except at the root, which Consul
/// answers with `null`.
fn list_keys(store: &Store, prefix: &str, separator: &str) -> Result<HttpResponse, HttpError> {
    let mut keys: Vec<&str> = Vec::new();
    for (key, _) in store.kv_range(prefix) {
        let listed = match key[prefix.len()..].find(separator).filter(|_| !separator.is_empty()) {
            Some(at) => &key[..prefix.len() + at + separator.len()],
            None => key.as_str(),
        };
        // Keys sharing a prefix are adjacent in sorted order.
        if keys.last() != Some(&listed) {
            keys.push(listed);
        }
    }
    match (keys.is_empty(), prefix.is_empty()) {
        (true, false) => Ok(not_found()),
        (true, true) => Ok(json_bytes(encode(&())?)),
        (false, _) => json(&keys),
    }
}

fn not_found() -> HttpResponse {
    text(StatusCode::NOT_FOUND, "")
}
