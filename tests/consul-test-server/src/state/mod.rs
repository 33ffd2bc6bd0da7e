//! The in-memory data Consul keeps in its Raft-replicated state store: the
//! catalog (nodes, services, checks) and the KV store, with the indexes that
//! blocking queries and `X-Consul-Index` are built on.
//!
//! One global index plays the role of Raft's: every write takes the next
//! value, and every record remembers the index that created and last
//! modified it. Per-table and per-service "last changed" indexes let a query
//! report the highest index relevant to *its* data.

mod catalog;
mod kv;
mod records;
mod service_list;
mod tables;
mod txn;
mod validate;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

pub(crate) use kv::{KvDelete, KvRecord};
pub(crate) use records::{CheckRecord, NodeRecord, ServiceRecord};
pub(crate) use txn::{KvOp, KvResult, KvVerb, ReadVerb, TxnFailure, TxnOutcome, WriteVerb};
pub use validate::CatalogError;

/// What a blocking query waits on. Writes report the topics they touched so
/// only the affected waiters wake up, which keeps thousands of concurrent
/// watches cheap.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Topic {
    /// The list of service names and tags (`/v1/catalog/services`).
    ServiceList,
    /// One service by lower-cased name (catalog and health queries).
    Service(String),
    /// Any KV key.
    Kv,
    /// The nodes table (`/v1/catalog/nodes`).
    Nodes,
    /// The checks table (`/v1/health/state/:state`).
    Checks,
    /// One node's record or services, by lower-cased node name (`/v1/catalog/node/:node`).
    NodeServices(String),
    /// One node's checks, by lower-cased node name (`/v1/health/node/:node`).
    NodeChecks(String),
}

/// Topics touched by one write.
pub(crate) type Touched = HashSet<Topic>;

/// The whole state store.
#[derive(Debug)]
pub(crate) struct Store {
    datacenter: String,
    /// The Raft-like index of the latest write.
    raft_index: u64,
    /// Bumped by [`Store::reset_index_to`]; blocking queries in flight return
    /// at once when it changes, as after a snapshot restore.
    restores: u64,
    nodes: HashMap<String, NodeRecord>,
    /// Lower-cased service name → (node, service ID) of every instance.
    /// Consul's service-name index is case-insensitive too.
    instances: HashMap<String, BTreeSet<(String, String)>>,
    /// Lower-cased service name → index of the last write that changed any
    /// instance (or its checks or node). Kept after the last instance goes,
    /// so the index of an extinct service does not jump.
    service_indexes: HashMap<String, u64>,
    /// What `/v1/catalog/services` lists.
    service_list: service_list::ServiceList,
    /// Index of the last change to any service registration.
    services_table_index: u64,
    /// Index of the last node created, changed or deleted: Consul's
    /// `nodes` table index, which service writes leave alone.
    nodes_table_index: u64,
    /// Index of the last check created, changed or deleted (with its
    /// service or node included): Consul's `checks` table index.
    checks_table_index: u64,
    /// Check ID → nodes that have a check with that ID.
    check_nodes: HashMap<String, BTreeSet<String>>,
    kv: BTreeMap<String, KvRecord>,
    /// Deleted keys and the index that deleted them, so a prefix query's
    /// index still moves forward when its last key goes away.
    tombstones: BTreeMap<String, u64>,
    kv_table_index: u64,
}

impl Store {
    /// An empty store serving `datacenter`.
    pub(crate) fn new(datacenter: String) -> Self {
        Store {
            datacenter,
            // Empty tables report index 1 (Consul never reports 0), so the
            // first write must get 2 for a query blocked at 1 to see it.
            raft_index: 1,
            restores: 0,
            nodes: HashMap::new(),
            instances: HashMap::new(),
            service_indexes: HashMap::new(),
            service_list: service_list::ServiceList::default(),
            services_table_index: 0,
            nodes_table_index: 0,
            checks_table_index: 0,
            check_nodes: HashMap::new(),
            kv: BTreeMap::new(),
            tombstones: BTreeMap::new(),
            kv_table_index: 0,
        }
    }

    /// The index of the latest write.
    pub(crate) fn raft_index(&self) -> u64 {
        self.raft_index
    }

    /// How many times the index was reset.
    pub(crate) fn restores(&self) -> u64 {
        self.restores
    }

    /// Takes the index for a new write, as a Raft apply would.
    fn next_index(&mut self) -> u64 {
        self.raft_index += 1;
        self.raft_index
    }

    /// Moves every index back to at most `index`, as if the servers had
    /// restored a snapshot taken at `index` with the current contents.
    /// Later writes continue from `index + 1`.
    /// An `index` below 1 counts as 1, for the reason given in [`Store::new`].
    pub(crate) fn reset_index_to(&mut self, index: u64) {
        let index = index.max(1);
        let clamp = |value: &mut u64| *value = (*value).min(index);
        self.raft_index = index;
        self.restores += 1;
        for node in self.nodes.values_mut() {
            node.clamp_indexes(index);
        }
        self.service_indexes.values_mut().for_each(clamp);
        clamp(&mut self.services_table_index);
        clamp(&mut self.nodes_table_index);
        clamp(&mut self.checks_table_index);
        for record in self.kv.values_mut() {
            clamp(&mut record.create_index);
            clamp(&mut record.modify_index);
        }
        self.tombstones.values_mut().for_each(clamp);
        clamp(&mut self.kv_table_index);
    }
}
