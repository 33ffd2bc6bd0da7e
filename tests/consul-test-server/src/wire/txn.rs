//! `PUT /v1/txn` bodies (<https://developer.hashicorp.com/consul/api-docs/txn>):
//! `api.TxnOps` in; `structs.TxnResponse` out for transactions that write,
//! `structs.TxnReadResponse` (the same plus the embedded `structs.QueryMeta`
//! fields) for read-only ones.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::KvEntryOut;

/// One element of the request array (`api.TxnOp`).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct TxnOpIn {
    #[serde(rename = "KV")]
    pub kv: Option<TxnKvOpIn>,
    /// Catalog operations are recognised only to be refused by name.
    pub node: Option<Value>,
    pub service: Option<Value>,
    pub check: Option<Value>,
}

/// A `KV` operation (`api.KVTxnOp`).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct TxnKvOpIn {
    pub verb: String,
    pub key: String,
    /// Base64; `null` or absent is no value.
    pub value: Option<String>,
    pub flags: u64,
    pub index: u64,
    pub session: String,
}

/// The response body, 200 or 409.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct TxnResponseOut<'a> {
    /// `null` when the transaction was rolled back.
    pub results: Option<Vec<TxnResultOut<'a>>>,
    /// `null` when it succeeded.
    pub errors: Option<Vec<TxnErrorOut>>,
    /// Present for read-only transactions only.
    #[serde(flatten)]
    pub query_meta: Option<TxnQueryMetaOut>,
}

/// One result (`structs.TxnResult`, whose other members are `omitempty`).
#[derive(Debug, Serialize)]
pub(crate) struct TxnResultOut<'a> {
    #[serde(rename = "KV")]
    pub kv: KvEntryOut<'a>,
}

/// One failed operation (`structs.TxnError`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct TxnErrorOut {
    pub op_index: usize,
    pub what: String,
}

/// `structs.QueryMeta` as a read-only transaction's body carries it: only
/// the leader fields are set (`Txn.Read` calls `setQueryMeta` itself).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct TxnQueryMetaOut {
    pub index: u64,
    /// A Go `time.Duration`, in nanoseconds.
    pub last_contact: u64,
    pub known_leader: bool,
    pub consistency_level: &'static str,
    pub not_modified: bool,
    /// `structs.QueryBackend`; 0 is the blocking-query backend.
    pub backend: u8,
    #[serde(rename = "ResultsFilteredByACLs")]
    pub results_filtered_by_acls: bool,
}
