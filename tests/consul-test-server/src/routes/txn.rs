//! `PUT /v1/txn` (<https://developer.hashicorp.com/consul/api-docs/txn>),
//! KV operations, as Consul's `agent/txn_endpoint.go` and `Txn.Apply` /
//! `Txn.Read` handle them:
//!
//! - The body is at most 512 KiB (`txn_max_req_len`) and each value at most
//!   512 KiB (`kv_max_value_size`), else 413. At most 128 operations
//!   (`maxTxnOps`, 64 before Consul 1.14), else 413 `Transaction contains
//!   too many operations (N > 128)`. An undecodable body is 400
//!   `Failed to parse body: …`.
//! - A transaction that writes goes through Raft: all its writes share one
//!   new index, and the answer carries no `X-Consul-*` headers. One without
//!   writes is served like a read (`?stale`/`?consistent`, not blocking):
//!   `X-Consul-KnownLeader` and `X-Consul-LastContact` but no
//!   `X-Consul-Index`, and a body with the `QueryMeta` fields besides
//!   `Results` and `Errors`.
//! - Every operation is checked before anything runs (`preCheck`): an empty
//!   key is `Must provide key` (but for `delete-tree`), and with ACLs a
//!   token without write access gets `Permission denied` for each write
//!   (`check-index` and `check-session` need read access; `get` results a
//!   token cannot read are dropped instead).
//! - Success is 200 with `{"Results":[…],"Errors":null}`; any failure is 409
//!   with `{"Results":null,"Errors":[{"OpIndex":i,"What":"…"},…]}` naming
//!   every failed operation, and nothing is written.
//!
//! `Node`, `Service` and `Check` operations, which Consul supports, are not
//! implemented by this test server: a transaction with one is refused with
//! 400 naming the operation type.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use hyper::StatusCode;

use crate::acl::Grant;
use crate::http::{HttpError, HttpResponse, Params, ReadOptions, encode, json_bytes, with_leader_meta};
use crate::shared::Shared;
use crate::state::{KvOp, KvResult, KvVerb, ReadVerb, TxnFailure, TxnOutcome, WriteVerb};
use crate::wire::{KvEntryOut, TxnErrorOut, TxnKvOpIn, TxnOpIn, TxnQueryMetaOut, TxnResponseOut, TxnResultOut};

/// Consul's `maxTxnOps` since 1.14 (hashicorp/consul#14599).
const MAX_TXN_OPS: usize = 128;
/// Consul's default `txn_max_req_len`.
const MAX_TXN_BYTES: usize = 512 * 1024;
/// Consul's default `kv_max_value_size`.
const MAX_VALUE_BYTES: usize = 512 * 1024;

/// One request element after decoding.
enum Decoded {
    Kv(KvOp),
    /// A `Node`, `Service` or `Check` operation.
    Unsupported(&'static str),
    /// An element naming no operation type.
    Empty,
}

/// Runs a transaction.
pub(super) fn txn(
    shared: &Shared,
    params: &Params,
    token: Option<&str>,
    body: &Bytes,
) -> Result<HttpResponse, HttpError> {
    if body.len() > MAX_TXN_BYTES {
        return Err(too_large(format!("Request body too large, max size: {MAX_TXN_BYTES} bytes")));
    }
    let raw: Vec<TxnOpIn> = serde_json::from_slice(body).map_err(|err| parse_error(&err.to_string()))?;
    let decoded = raw.into_iter().map(decode).collect::<Result<Vec<_>, _>>()?;
    if decoded.len() > MAX_TXN_OPS {
        let size = decoded.len();
        return Err(too_large(format!("Transaction contains too many operations ({size} > {MAX_TXN_OPS})")));
    }
    let mut ops = Vec::with_capacity(decoded.len());
    for op in decoded {
        match op {
            Decoded::Kv(op) if op.value.len() > MAX_VALUE_BYTES => {
                let (key, size) = (&op.key, op.value.len());
                return Err(too_large(format!(
                    "Value for key {key:?} is too large ({size} > {MAX_VALUE_BYTES} bytes)"
                )));
            }
            Decoded::Kv(op) => ops.push(op),
            Decoded::Unsupported(kind) => {
                return Err(HttpError::bad_request(format!(
                    "consul-test-server does not implement {kind} operations in /v1/txn, only KV"
                )));
            }
            // Consul's `convertOps` skips such an element, so the `OpIndex`
            // of later operations counts without it.
            Decoded::Empty => {}
        }
    }
    if ops.iter().any(|op| matches!(op.verb, KvVerb::Write(_))) {
        write(shared, params, token, &ops)
    } else {
        read(shared, params, token, &ops)
    }
}

/// The Raft path (`Txn.Apply`).
fn write(shared: &Shared, params: &Params, token: Option<&str>, ops: &[KvOp]) -> Result<HttpResponse, HttpError> {
    params.check_datacenter(&shared.datacenter)?;
    let grant = Grant::of(shared.acl.as_ref(), token)?;
    let refused = pre_check(ops, grant);
    let outcome =
        if refused.is_empty() { shared.write(|store, touched| store.kv_txn_write(ops, touched)) } else { Err(refused) };
    respond(&outcome, grant, None)
}

/// The read-only fast path (`Txn.Read`).
fn read(shared: &Shared, params: &Params, token: Option<&str>, ops: &[KvOp]) -> Result<HttpResponse, HttpError> {
    // Parsed for its errors and `?dc`; blocking is not supported here.
    ReadOptions::parse(params, &shared.datacenter)?;
    let grant = Grant::of(shared.acl.as_ref(), token)?;
    let refused = pre_check(ops, grant);
    let outcome = if refused.is_empty() { shared.read().kv_txn_read(ops) } else { Err(refused) };
    let meta = TxnQueryMetaOut {
        index: 0,
        last_contact: 0,
        known_leader: true,
        consistency_level: "",
        not_modified: false,
        backend: 0,
        // Only the anonymous token lacks read access here, and Consul never
        // tells the anonymous token that results were filtered.
        results_filtered_by_acls: false,
    };
    Ok(with_leader_meta(respond(&outcome, grant, Some(meta))?))
}

/// Consul's `preCheck` (`kvsPreApply` for each operation).
fn pre_check(ops: &[KvOp], grant: Grant) -> Vec<TxnFailure> {
    let failure = |op: &KvOp| {
        if op.key.is_empty() && op.verb != KvVerb::Write(WriteVerb::DeleteTree) {
            return Some("Must provide key");
        }
        let allowed = match op.verb {
            // Reads are filtered on the way out instead.
            KvVerb::Read(ReadVerb::Get | ReadVerb::GetOrEmpty | ReadVerb::GetTree) => true,
            // Their outcome reveals the key, so they need read access.
            KvVerb::Read(ReadVerb::CheckIndex | ReadVerb::CheckSession) => grant.can_read(),
            // Everything else needs write access, `check-not-exists` and
            // unknown verbs included (`kvsPreApply`'s default branch).
            _ => grant.can_write(),
        };
        (!allowed).then_some("Permission denied")
    };
    ops.iter()
        .enumerate()
        .filter_map(|(op_index, op)| failure(op).map(|what| TxnFailure { op_index, what: what.to_owned() }))
        .collect()
}

fn respond(outcome: &TxnOutcome, grant: Grant, query_meta: Option<TxnQueryMetaOut>) -> Result<HttpResponse, HttpError> {
    let (status, body) = match outcome {
        Ok(results) => {
            // `FilterTxnResults`: drop what the token may not read.
            let results = results.iter().filter(|_| grant.can_read()).map(result_out).collect();
            (StatusCode::OK, TxnResponseOut { results: Some(results), errors: None, query_meta })
        }
        Err(failures) => {
            let errors = failures.iter().map(|f| TxnErrorOut { op_index: f.op_index, what: f.what.clone() }).collect();
            (StatusCode::CONFLICT, TxnResponseOut { results: None, errors: Some(errors), query_meta })
        }
    };
    let mut response = json_bytes(encode(&body)?);
    *response.status_mut() = status;
    Ok(response)
}

fn result_out(result: &KvResult) -> TxnResultOut<'_> {
    TxnResultOut {
        kv: KvEntryOut {
            lock_index: result.lock_index,
            key: &result.key,
            flags: result.flags,
            value: result.value.as_ref().filter(|value| !value.is_empty()).map(|value| STANDARD.encode(value)),
            create_index: result.create_index,
            modify_index: result.modify_index,
        },
    }
}

fn decode(op: TxnOpIn) -> Result<Decoded, HttpError> {
    // Consul's `convertOps` looks at the types in this order.
    let Some(kv) = op.kv else {
        return Ok(match (op.node, op.service, op.check) {
            (Some(_), _, _) => Decoded::Unsupported("Node"),
            (None, Some(_), _) => Decoded::Unsupported("Service"),
            (None, None, Some(_)) => Decoded::Unsupported("Check"),
            (None, None, None) => Decoded::Empty,
        });
    };
    let TxnKvOpIn { verb, key, value, flags, index, session } = kv;
    let value = match value {
        Some(text) => STANDARD.decode(&text).map_err(|err| base64_error(&err, text.len()))?,
        None => Vec::new(),
    };
    Ok(Decoded::Kv(KvOp { verb: KvVerb::parse(&verb), key, value, flags, index, session }))
}

/// Go's `encoding/json` error for a bad `[]byte` field.
fn base64_error(err: &base64::DecodeError, len: usize) -> HttpError {
    let at = match *err {
        base64::DecodeError::InvalidByte(at, _) | base64::DecodeError::InvalidLastSymbol(at, _) => at,
        base64::DecodeError::InvalidLength(_) | base64::DecodeError::InvalidPadding => len,
    };
    parse_error(&format!("illegal base64 data at input byte {at}"))
}

fn parse_error(detail: &str) -> HttpError {
    HttpError::bad_request(format!("Failed to parse body: {detail}"))
}

fn too_large(message: String) -> HttpError {
    HttpError::new(StatusCode::PAYLOAD_TOO_LARGE, message)
}
