//! Whole-table reads: every node (`/v1/catalog/nodes`) and every check in
//! a state (`/v1/health/state/:state`), in the order of Consul's memdb `id`
//! indexes, which lower-case node names and check IDs, with the index of
//! the table each query reports (`state.Store.Nodes` and `ChecksInState`
//! both use the table's max index).

use std::cmp::Ordering;

use super::Store;
use super::records::{CheckRecord, NodeRecord};
use crate::wire::Status;

impl Store {
    /// The index `/v1/catalog/nodes` reports: the nodes table's.
    pub(crate) fn nodes_index(&self) -> u64 {
        self.nodes_table_index
    }

    /// The index `/v1/health/state/:state` reports, whatever the state: the
    /// checks table's.
    pub(crate) fn checks_index(&self) -> u64 {
        self.checks_table_index
    }

    /// A node by name; Consul's node index is case-insensitive.
    pub(crate) fn node(&self, name: &str) -> Option<&NodeRecord> {
        self.nodes.get(name).or_else(|| self.nodes.values().find(|node| node.name.eq_ignore_ascii_case(name)))
    }

    /// Every node, by name as Consul orders them.
    pub(crate) fn nodes_sorted(&self) -> Vec<&NodeRecord> {
        let mut nodes: Vec<&NodeRecord> = self.nodes.values().collect();
        nodes.sort_unstable_by(|a, b| caseless(&a.name, &b.name));
        nodes
    }

    /// The checks of one node (case-insensitive name), ordered by check ID.
    pub(crate) fn checks_of(&self, name: &str) -> Vec<(&NodeRecord, &CheckRecord)> {
        let Some(node) = self.node(name) else { return Vec::new() };
        let mut checks: Vec<_> = node.checks.values().map(|check| (node, check)).collect();
        checks.sort_by(|(_, a), (_, b)| caseless(&a.fields.id, &b.fields.id));
        checks
    }

    /// The checks whose status `admits`, with their nodes, ordered by node
    /// then check ID. Cost is one pass over the checks, no copies.
    pub(crate) fn checks_where(&self, admits: impl Fn(Status) -> bool) -> Vec<(&NodeRecord, &CheckRecord)> {
        let mut out = Vec::new();
        for node in self.nodes_sorted() {
            let start = out.len();
            out.extend(node.checks.values().filter(|c| admits(c.fields.status)).map(|check| (node, check)));
            // Already in byte order; this only moves IDs whose case differs.
            out[start..].sort_by(|(_, a), (_, b)| caseless(&a.fields.id, &b.fields.id));
        }
        out
    }
}

/// Compares as Consul's lower-casing indexes do, without allocating.
fn caseless(a: &str, b: &str) -> Ordering {
    a.chars().flat_map(char::to_lowercase).cmp(b.chars().flat_map(char::to_lowercase)).then_with(|| a.cmp(b))
}

#[cfg(test)]
mod tests {
    use super::caseless;
    use std::cmp::Ordering;

    #[test]
    fn orders_case_insensitively() {
        assert_eq!(caseless("Beta", "alpha"), Ordering::Greater);
        assert_eq!(caseless("node-B", "node-a"), Ordering::Greater);
        assert_eq!(caseless("a", "a"), Ordering::Equal);
    }
}
