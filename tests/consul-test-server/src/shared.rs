//! State shared by the listener, the request handlers and the test API.

use std::sync::{PoisonError, RwLock, RwLockReadGuard};

use crate::acl::Acl;
use crate::blocking::Notifier;
use crate::faults::FaultSwitch;
use crate::gauge::Gauge;
use crate::identity::Identity;
use crate::request_log::RequestLog;
use crate::state::{Store, Touched};

/// Everything a request handler needs.
#[derive(Debug)]
pub(crate) struct Shared {
    store: RwLock<Store>,
    notifier: Notifier,
    pub faults: FaultSwitch,
    pub log: RequestLog,
    pub acl: Option<Acl>,
    /// The datacenter this server answers for.
    pub datacenter: String,
    /// The local agent's node.
    pub identity: Identity,
    /// TCP connections currently open.
    pub connections: Gauge,
    /// Blocking queries currently inside `blocking::run`.
    pub blocking_queries: Gauge,
}

impl Shared {
    pub(crate) fn new(datacenter: String, acl: Option<Acl>, identity: Identity) -> Self {
        Shared {
            store: RwLock::new(Store::new(datacenter.clone())),
            notifier: Notifier::default(),
            faults: FaultSwitch::default(),
            log: RequestLog::default(),
            acl,
            datacenter,
            identity,
            connections: Gauge::default(),
            blocking_queries: Gauge::default(),
        }
    }

    /// Reads the store. A panic in another holder leaves the data consistent
    /// enough for a test server, so poisoning is ignored.
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, Store> {
        self.store.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs a write, then wakes the blocking queries it affected (after the
    /// lock is released, so woken queries do not contend with the writer).
    pub(crate) fn write<R>(&self, apply: impl FnOnce(&mut Store, &mut Touched) -> R) -> R {
        let mut touched = Touched::new();
        let result = {
            let mut store = self.store.write().unwrap_or_else(PoisonError::into_inner);
            apply(&mut store, &mut touched)
        };
        self.notifier.notify(touched);
        result
    }

    /// Moves every index back to at most `index` and ends all blocking waits.
    pub(crate) fn reset_index_to(&self, index: u64) {
        self.store.write().unwrap_or_else(PoisonError::into_inner).reset_index_to(index);
        self.notifier.notify_all();
    }

    pub(crate) fn notifier(&self) -> &Notifier {
        &self.notifier
    }
}
