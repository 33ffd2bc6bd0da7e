//! What one apply did, and why a part of it could not be done: typed, so the run loop logs
//! them and tests match on variants.

use std::{fmt, net::SocketAddr, sync::Arc};

use crate::{
    dataplane::tables::TableError,
    model::{Frontend, Service},
};

/// What one [`super::Reconciler::apply_changes`] did.
#[derive(Debug, Default)]
pub struct ApplyReport {
    /// Services written for the first time.
    pub added: Vec<Arc<Service>>,
    /// Services whose backends, algorithm or name changed.
    pub changed: Vec<Arc<Service>>,
    /// Services removed: name and frontend.
    pub removed: Vec<(String, Frontend)>,
    /// What could not be written, with the reason (naming the limit hit).
    pub failed: Vec<ApplyFailure>,
    /// Backend addresses that left every service (their ids were cleared).
    pub released_backends: Vec<SocketAddr>,
    /// Number of map writes and deletes.
    pub writes: usize,
}

impl ApplyReport {
    /// Whether nothing was changed and nothing failed.
    pub fn is_noop(&self) -> bool {
        self.added.is_empty() && self.changed.is_empty() && self.removed.is_empty() && self.failed.is_empty()
    }
}

/// A limit of the kernel maps that a write would exceed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LimitHit {
    /// No free service id.
    #[error("limits.max_services = {0}")]
    Services(u32),
    /// No free backend id.
    #[error("limits.max_backends = {0}")]
    Backends(u32),
    /// The service hash is full.
    #[error("limits.max_service_slots = {limit} (in use: {in_use})")]
    ServiceSlots {
        /// The configured size.
        limit: u32,
        /// Entries in use.
        in_use: u64,
    },
    /// More slots than a service entry can count.
    #[error("65535 backends per service")]
    SlotsPerService,
}

/// Why one service could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// A limit would be exceeded; the service is left as it was.
    #[error("limit reached: {0}")]
    Limit(#[from] LimitHit),
    /// A map write failed; the service is left as it was.
    #[error(transparent)]
    Table(#[from] TableError),
}

/// A clean-up step after a service's new version was published (or rolled back).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CleanupStep {
    /// Dropping client-affinity entries that name a backend that left.
    ForgetAffinity,
    /// Putting a slot back after a failed write.
    RollBackSlot(u16),
    /// Deleting a slot past the new count.
    DeleteSurplusSlot(u16),
}

impl fmt::Display for CleanupStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ForgetAffinity => f.write_str("forgetting client affinity"),
            Self::RollBackSlot(slot) => write!(f, "rolling back slot {slot}"),
            Self::DeleteSurplusSlot(slot) => write!(f, "deleting surplus slot {slot}"),
        }
    }
}

/// Something an apply could not do.
#[derive(Debug, thiserror::Error)]
pub enum ApplyFailure {
    /// A service was not written (added or changed); the kernel keeps its old version.
    #[error("{name} {frontend}: {error}")]
    Service {
        /// The service's name.
        name: String,
        /// Its frontend.
        frontend: Frontend,
        /// Why.
        error: ApplyError,
    },
    /// A service could not be removed.
    #[error("removing {frontend}: {error}")]
    Removal {
        /// The frontend.
        frontend: Frontend,
        /// The map error.
        error: TableError,
    },
    /// A clean-up write failed; the service itself is as intended.
    #[error("{name} {frontend}: {step}: {error}")]
    Cleanup {
        /// The service's name.
        name: String,
        /// Its frontend.
        frontend: Frontend,
        /// Which step.
        step: CleanupStep,
        /// The map error.
        error: TableError,
    },
    /// A backend id could not be cleared (it stays reserved).
    #[error("clearing backend id {id}: {error}")]
    Backend {
        /// The backend id.
        id: u32,
        /// The map error.
        error: TableError,
    },
}

impl ApplyFailure {
    /// The limit this failure hit, if that is why it failed.
    pub fn limit(&self) -> Option<&LimitHit> {
        match self {
            Self::Service { error: ApplyError::Limit(limit), .. } => Some(limit),
            _ => None,
        }
    }
}
