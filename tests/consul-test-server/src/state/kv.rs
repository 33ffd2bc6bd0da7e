//! The KV store with Consul's check-and-set rules and index reporting
//! (`kvsSetTxn`, `kvsSetCASTxn`, `kvsDeleteCASTxn`, and the tombstone-aware
//! prefix index).

use std::collections::BTreeMap;
use std::ops::Bound;

use super::{Store, Topic, Touched};

/// One key's value and metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KvRecord {
    pub value: Vec<u8>,
    pub flags: u64,
    pub lock_index: u64,
    pub create_index: u64,
    pub modify_index: u64,
}

/// What a `DELETE /v1/kv/:key` removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KvDelete {
    /// The key alone.
    Key,
    /// Every key with the prefix (`?recurse`).
    Tree,
    /// The key, only if its `ModifyIndex` equals this (`?cas=`).
    Cas(u64),
}

impl Store {
    /// The record stored at `key`.
    pub(crate) fn kv_get(&self, key: &str) -> Option<&KvRecord> {
        self.kv.get(key)
    }

    /// The index a single-key read reports: the key's `ModifyIndex`, or the
    /// KV table's index when the key does not exist.
    pub(crate) fn kv_key_index(&self, key: &str) -> u64 {
        self.kv.get(key).map_or(self.kv_table_index, |r| r.modify_index)
    }

    /// The index a prefix read reports: the highest `ModifyIndex` (or delete
    /// index) under the prefix, falling back to the KV table's index.
    pub(crate) fn kv_prefix_index(&self, prefix: &str) -> u64 {
        let live = self.kv_range(prefix).map(|(_, r)| r.modify_index);
        let deleted = prefixed(&self.tombstones, prefix).map(|(_, index)| *index);
        live.chain(deleted).max().unwrap_or(self.kv_table_index)
    }

    /// Keys under `prefix` in order, with their records.
    pub(crate) fn kv_range<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a String, &'a KvRecord)> {
        prefixed(&self.kv, prefix)
    }

    /// `PUT /v1/kv/:key`. With `cas`, 0 creates only if the key is absent and
    /// N updates only if the key's `ModifyIndex` is N. Returns whether the
    /// value was written (an unchanged value counts as written).
    pub(crate) fn kv_put(
        &mut self,
        key: &str,
        value: Vec<u8>,
        flags: u64,
        cas: Option<u64>,
        touched: &mut Touched,
    ) -> bool {
        let index = self.next_index();
        if !self.kv_cas_matches(key, cas) {
            return false;
        }
        self.kv_set_at(index, key, value, flags, touched);
        true
    }

    /// Whether a write with `cas` may proceed (`kvsSetCASTxn`): no `cas`
    /// always may, 0 only if the key is absent, N only if the key's
    /// `ModifyIndex` is N.
    pub(super) fn kv_cas_matches(&self, key: &str, cas: Option<u64>) -> bool {
        match (cas, self.kv.get(key)) {
            (None, _) => true,
            (Some(0), existing) => existing.is_none(),
            (Some(expected), Some(record)) => record.modify_index == expected,
            (Some(_), None) => false,
        }
    }

    /// Stores `key` as of write `index`, as `kvsSetTxn` does: writing the
    /// value and flags it already has changes nothing, not even its
    /// `ModifyIndex`.
    pub(super) fn kv_set_at(&mut self, index: u64, key: &str, value: Vec<u8>, flags: u64, touched: &mut Touched) {
        let unchanged = self.kv.get(key).is_some_and(|r| r.value == value && r.flags == flags);
        if !unchanged {
            let existing = self.kv.get(key);
            let (create_index, lock_index) = existing.map_or((index, 0), |r| (r.create_index, r.lock_index));
            let record = KvRecord { value, flags, lock_index, create_index, modify_index: index };
            self.kv.insert(key.to_owned(), record);
            self.tombstones.remove(key);
            self.kv_table_index = index;
            touched.insert(Topic::Kv);
        }
    }

    /// `DELETE /v1/kv/:key`. Returns Consul's answer: `false` only when a
    /// check-and-set does not match an existing key.
    pub(crate) fn kv_delete(&mut self, key: &str, mode: KvDelete, touched: &mut Touched) -> bool {
        let index = self.next_index();
        self.kv_delete_at(index, key, mode, touched)
    }

    /// Deletes as of write `index`, leaving tombstones so prefix indexes
    /// keep moving forward. Returns what [`Store::kv_delete`] answers.
    pub(super) fn kv_delete_at(&mut self, index: u64, key: &str, mode: KvDelete, touched: &mut Touched) -> bool {
        let doomed: Vec<String> = match mode {
            KvDelete::Key => self.kv.get_key_value(key).map(|(k, _)| k.clone()).into_iter().collect(),
            KvDelete::Tree => self.kv_range(key).map(|(k, _)| k.clone()).collect(),
            KvDelete::Cas(expected) => match self.kv.get(key) {
                // Consul: a CAS delete of a missing key succeeds; cas=0 never matches.
                None => return true,
                Some(record) if record.modify_index != expected => return false,
                Some(_) => vec![key.to_owned()],
            },
        };
        if doomed.is_empty() {
            return true;
        }
        for key in doomed {
            self.kv.remove(&key);
            self.tombstones.insert(key, index);
        }
        self.kv_table_index = index;
        touched.insert(Topic::Kv);
        true
    }
}

fn prefixed<'a, V>(map: &'a BTreeMap<String, V>, prefix: &'a str) -> impl Iterator<Item = (&'a String, &'a V)> {
    map.range::<str, _>((Bound::Included(prefix), Bound::Unbounded)).take_while(move |(key, _)| key.starts_with(prefix))
}
