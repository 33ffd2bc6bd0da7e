//! A record of every request the server received, so tests can check how a
//! client behaved: that it sent its token, used `?index=`, backed off.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};

use tokio::time::Instant;

/// Oldest records are dropped past this many, so a long benchmark stays bounded.
const CAPACITY: usize = 100_000;

/// One received request, recorded before any fault or ACL check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    /// `GET`, `PUT`, …
    pub method: String,
    /// The path as sent (still percent-encoded).
    pub path: String,
    /// The raw query string, without `?`.
    pub query: String,
    /// The `index` query parameter, as sent.
    pub index_param: Option<String>,
    /// The `wait` query parameter, as sent.
    pub wait_param: Option<String>,
    /// The token, from whichever place the request carried it.
    pub token: Option<String>,
    /// When the request arrived (tokio's clock, so paused-time tests work).
    pub received_at: Instant,
}

/// The shared log.
#[derive(Debug, Default)]
pub(crate) struct RequestLog {
    records: Mutex<VecDeque<RequestRecord>>,
}

impl RequestLog {
    pub(crate) fn push(&self, record: RequestRecord) {
        let mut records = self.records.lock().unwrap_or_else(PoisonError::into_inner);
        if records.len() == CAPACITY {
            records.pop_front();
        }
        records.push_back(record);
    }

    pub(crate) fn snapshot(&self) -> Vec<RequestRecord> {
        let records = self.records.lock().unwrap_or_else(PoisonError::into_inner);
        records.iter().cloned().collect()
    }

    pub(crate) fn clear(&self) {
        self.records.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }
}
