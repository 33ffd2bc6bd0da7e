//! KV transactions (`PUT /v1/txn`, <https://developer.hashicorp.com/consul/api-docs/txn>)
//! with the semantics of Consul's `state/txn.go` (`txnKVS`, `txnDispatch`):
//! operations run in order, each seeing the effects of those before it;
//! every failing operation is reported with Consul's message; and one
//! failure rolls the whole transaction back, as Consul aborts its memdb
//! transaction. A transaction that writes is one Raft entry, so all its
//! writes share one index; the index is taken even when the transaction
//! then fails, as the Raft entry is committed before the state store runs it.
//!
//! The server has no sessions, so `lock` and `unlock` always fail, and
//! `check-session` passes only for "no session", with exactly the messages
//! Consul gives for a session that does not exist or does not hold the key.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use super::kv::{KvDelete, KvRecord};
use super::{Store, Touched};

/// A KV verb (`api.KVOp`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KvVerb {
    /// One that reads (or checks) only.
    Read(ReadVerb),
    /// One that writes, which sends the transaction through Raft.
    Write(WriteVerb),
    /// A verb Consul does not know; the operation fails with `unknown KV verb`.
    Unknown(String),
}

/// The verbs that only read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadVerb {
    Get,
    GetOrEmpty,
    GetTree,
    CheckIndex,
    CheckSession,
    CheckNotExists,
}

/// The verbs that write (`isWrite` in Consul's `agent/txn_endpoint.go`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteVerb {
    Set,
    Cas,
    Lock,
    Unlock,
    Delete,
    DeleteTree,
    DeleteCas,
}

impl KvVerb {
    /// Parses the wire spelling.
    pub(crate) fn parse(verb: &str) -> Self {
        match verb {
            "get" => KvVerb::Read(ReadVerb::Get),
            "get-or-empty" => KvVerb::Read(ReadVerb::GetOrEmpty),
            "get-tree" => KvVerb::Read(ReadVerb::GetTree),
            "check-index" => KvVerb::Read(ReadVerb::CheckIndex),
            "check-session" => KvVerb::Read(ReadVerb::CheckSession),
            "check-not-exists" => KvVerb::Read(ReadVerb::CheckNotExists),
            "set" => KvVerb::Write(WriteVerb::Set),
            "cas" => KvVerb::Write(WriteVerb::Cas),
            "lock" => KvVerb::Write(WriteVerb::Lock),
            "unlock" => KvVerb::Write(WriteVerb::Unlock),
            "delete" => KvVerb::Write(WriteVerb::Delete),
            "delete-tree" => KvVerb::Write(WriteVerb::DeleteTree),
            "delete-cas" => KvVerb::Write(WriteVerb::DeleteCas),
            other => KvVerb::Unknown(other.to_owned()),
        }
    }
}

/// One decoded KV operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KvOp {
    pub verb: KvVerb,
    pub key: String,
    pub value: Vec<u8>,
    pub flags: u64,
    /// The `Index` field: the expected `ModifyIndex` for CAS verbs.
    pub index: u64,
    pub session: String,
}

/// One result: a `DirEntry`. Consul blanks the value out of every result
/// but those of `get`, `get-or-empty` and `get-tree`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KvResult {
    pub key: String,
    /// `None` when blanked out.
    pub value: Option<Vec<u8>>,
    pub flags: u64,
    pub lock_index: u64,
    pub create_index: u64,
    pub modify_index: u64,
}

impl KvResult {
    fn of(key: &str, record: &KvRecord, with_value: bool) -> Self {
        KvResult {
            key: key.to_owned(),
            value: with_value.then(|| record.value.clone()),
            flags: record.flags,
            lock_index: record.lock_index,
            create_index: record.create_index,
            modify_index: record.modify_index,
        }
    }
}

/// A failed operation (`structs.TxnError`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TxnFailure {
    /// Position of the operation in the transaction.
    pub op_index: usize,
    /// Consul's message.
    pub what: String,
}

/// The outcome of a transaction: every result in operation order, or
/// every failure.
pub(crate) type TxnOutcome = Result<Vec<KvResult>, Vec<TxnFailure>>;

impl Store {
    /// Runs a transaction without writes (Consul's `TxnRO`).
    pub(crate) fn kv_txn_read(&self, ops: &[KvOp]) -> TxnOutcome {
        collect(ops.iter().map(|op| match &op.verb {
            KvVerb::Read(verb) => self.txn_read_op(*verb, op),
            KvVerb::Unknown(verb) => Err(unknown_verb(verb)),
            // Callers send every transaction with a write to `kv_txn_write`;
            // this is memdb's answer to a write in a read transaction.
            KvVerb::Write(_) => Err("cannot insert in read-only transaction".to_owned()),
        }))
    }

    /// Runs a transaction with writes at one new index (Consul's `TxnRW`),
    /// rolling everything back if any operation fails.
    pub(crate) fn kv_txn_write(&mut self, ops: &[KvOp], touched: &mut Touched) -> TxnOutcome {
        let index = self.next_index();
        let mut undo = Undo::new(self);
        let mut outcomes = Vec::with_capacity(ops.len());
        for op in ops {
            let outcome = match &op.verb {
                KvVerb::Read(verb) => self.txn_read_op(*verb, op),
                KvVerb::Write(verb) => self.txn_write_op(index, *verb, op, &mut undo, touched),
                KvVerb::Unknown(verb) => Err(unknown_verb(verb)),
            };
            outcomes.push(outcome);
        }
        let outcome = collect(outcomes.into_iter());
        if outcome.is_err() {
            undo.restore(self);
            // Nothing changed, so nobody needs waking.
            touched.clear();
        }
        outcome
    }

    fn txn_read_op(&self, verb: ReadVerb, op: &KvOp) -> Result<Vec<KvResult>, String> {
        let key = op.key.as_str();
        let existing = self.kv.get(key);
        match (verb, existing) {
            (ReadVerb::Get, None) => Err(format!("key {key:?} doesn't exist")),
            (ReadVerb::Get | ReadVerb::GetOrEmpty, Some(record)) => Ok(vec![KvResult::of(key, record, true)]),
            // Consul answers with the request's own entry, value cleared.
            (ReadVerb::GetOrEmpty, None) => Ok(vec![KvResult {
                key: op.key.clone(),
                value: Some(Vec::new()),
                flags: op.flags,
                lock_index: 0,
                create_index: 0,
                modify_index: op.index,
            }]),
            (ReadVerb::GetTree, _) => Ok(self.kv_range(key).map(|(k, record)| KvResult::of(k, record, true)).collect()),
            (ReadVerb::CheckIndex, None) => Err(format!("failed to check index, key {key:?} doesn't exist")),
            (ReadVerb::CheckIndex, Some(record)) if record.modify_index != op.index => Err(format!(
                "failed index check for key {key:?}, current modify index {} != {}",
                record.modify_index, op.index
            )),
            (ReadVerb::CheckSession, None) => Err(format!("failed to check session, key {key:?} doesn't exist")),
            // No key is ever locked here, so its session is always "".
            (ReadVerb::CheckSession, Some(_)) if !op.session.is_empty() => {
                Err(format!("failed session check for key {key:?}, current session \"\" != {:?}", op.session))
            }
            (ReadVerb::CheckIndex | ReadVerb::CheckSession, Some(record)) => Ok(vec![KvResult::of(key, record, false)]),
            (ReadVerb::CheckNotExists, Some(_)) => Err(format!("key {key:?} exists")),
            (ReadVerb::CheckNotExists, None) => Ok(Vec::new()),
        }
    }

    fn txn_write_op(
        &mut self,
        index: u64,
        verb: WriteVerb,
        op: &KvOp,
        undo: &mut Undo,
        touched: &mut Touched,
    ) -> Result<Vec<KvResult>, String> {
        let key = op.key.as_str();
        match verb {
            WriteVerb::Cas if !self.kv_cas_matches(key, Some(op.index)) => {
                Err(format!("failed to set key {key:?}, index is stale"))
            }
            WriteVerb::Set | WriteVerb::Cas => {
                undo.save(self, key);
                self.kv_set_at(index, key, op.value.clone(), op.flags, touched);
                Ok(self.kv.get(key).map(|record| KvResult::of(key, record, false)).into_iter().collect())
            }
            WriteVerb::Lock | WriteVerb::Unlock if op.session.is_empty() => Err("missing session".to_owned()),
            WriteVerb::Lock => Err(format!("invalid session {:?}", op.session)),
            WriteVerb::Unlock => {
                Err(format!("failed to unlock key {key:?}, lock isn't held, or is held by another session"))
            }
            WriteVerb::Delete => {
                undo.save(self, key);
                self.kv_delete_at(index, key, KvDelete::Key, touched);
                Ok(Vec::new())
            }
            WriteVerb::DeleteTree => {
                let doomed: Vec<String> = self.kv_range(key).map(|(k, _)| k.clone()).collect();
                for key in &doomed {
                    undo.save(self, key);
                }
                self.kv_delete_at(index, key, KvDelete::Tree, touched);
                Ok(Vec::new())
            }
            WriteVerb::DeleteCas => {
                undo.save(self, key);
                if self.kv_delete_at(index, key, KvDelete::Cas(op.index), touched) {
                    Ok(Vec::new())
                } else {
                    Err(format!("failed to delete key {key:?}, index is stale"))
                }
            }
        }
    }
}

fn unknown_verb(verb: &str) -> String {
    format!("unknown KV verb {verb:?}")
}

/// Gathers per-operation outcomes the way `txnDispatch` does: all results
/// in order if every operation succeeded, else every failure.
fn collect(outcomes: impl Iterator<Item = Result<Vec<KvResult>, String>>) -> TxnOutcome {
    let mut results = Vec::new();
    let mut failures = Vec::new();
    for (op_index, outcome) in outcomes.enumerate() {
        match outcome {
            Ok(found) => results.extend(found),
            Err(what) => failures.push(TxnFailure { op_index, what }),
        }
    }
    if failures.is_empty() { Ok(results) } else { Err(failures) }
}

/// What a transaction overwrote, to put back if it fails.
struct Undo {
    kv_table_index: u64,
    /// Key → its record and tombstone before the transaction first touched it.
    saved: HashMap<String, (Option<KvRecord>, Option<u64>)>,
}

impl Undo {
    fn new(store: &Store) -> Self {
        Undo { kv_table_index: store.kv_table_index, saved: HashMap::new() }
    }

    /// Remembers `key` as it is now, unless already remembered.
    fn save(&mut self, store: &Store, key: &str) {
        if let Entry::Vacant(slot) = self.saved.entry(key.to_owned()) {
            slot.insert((store.kv.get(key).cloned(), store.tombstones.get(key).copied()));
        }
    }

    fn restore(self, store: &mut Store) {
        for (key, (record, tombstone)) in self.saved {
            match tombstone {
                Some(index) => store.tombstones.insert(key.clone(), index),
                None => store.tombstones.remove(&key),
            };
            match record {
                Some(record) => store.kv.insert(key, record),
                None => store.kv.remove(&key),
            };
        }
        store.kv_table_index = self.kv_table_index;
    }
}
