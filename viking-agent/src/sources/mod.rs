//! Sources of desired state. Each source sends full snapshots of the services it knows;
//! the run loop keeps the latest snapshot per source and merges them.

pub mod static_file;

use std::collections::BTreeMap;

use crate::model::DesiredState;

/// Which source a snapshot comes from. The order is the precedence when two sources claim
/// the same frontend: the earlier one wins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SourceId {
    /// The `--config` file.
    StaticFile,
}

/// A full snapshot from one source.
#[derive(Debug)]
pub struct Snapshot {
    /// Who sent it.
    pub source: SourceId,
    /// Everything that source wants served.
    pub state: DesiredState,
}

/// The latest snapshot of every source.
#[derive(Debug, Default)]
pub struct SourceSet {
    latest: BTreeMap<SourceId, DesiredState>,
}

impl SourceSet {
    /// Records a snapshot, replacing the source's previous one.
    pub fn update(&mut self, snapshot: Snapshot) {
        self.latest.insert(snapshot.source, snapshot.state);
    }

    /// Whether every one of `expected` has reported at least once. Until then nothing the
    /// kernel holds is removed (a restarted agent must not flush before a full sync).
    pub fn has_all(&self, expected: &[SourceId]) -> bool {
        expected.iter().all(|source| self.latest.contains_key(source))
    }

    /// The union of all snapshots; a frontend claimed by two sources goes to the first
    /// source and the conflict is returned as a message.
    pub fn merged(&self) -> (DesiredState, Vec<String>) {
        let mut merged = DesiredState::default();
        let mut conflicts = Vec::new();
        for (source, state) in &self.latest {
            for (frontend, service) in &state.services {
                match merged.services.get(frontend) {
                    Some(winner) => conflicts.push(format!(
                        "{frontend}: {source:?} service {:?} ignored, already served as {:?}",
                        service.name, winner.name
                    )),
                    None => {
                        merged.services.insert(*frontend, service.clone());
                    }
                }
            }
        }
        (merged, conflicts)
    }
}
