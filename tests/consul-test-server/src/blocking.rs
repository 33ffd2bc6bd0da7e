//! Blocking queries (<https://developer.hashicorp.com/consul/api-docs/features/blocking>):
//! `?index=N&wait=D` holds the request until the index of the data it would
//! return exceeds N, or until D (default 5m, at most 10m) plus a random
//! jitter of up to D/16 has passed. No index, or index 0, answers at once.
//!
//! Waiters sleep on a per-topic `tokio::sync::watch` channel that writers
//! bump, so nothing polls.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{Instant, sleep_until};

use crate::shared::Shared;
use crate::state::{Store, Topic};

/// Wait used when a blocking query gives none (or a non-positive one).
pub(crate) const DEFAULT_WAIT: Duration = Duration::from_secs(5 * 60);
/// Longest wait Consul honours.
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(10 * 60);

/// The blocking part of a read request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Blocking {
    /// `?index=`; 0 means "answer now".
    pub min_index: u64,
    /// `?wait=` as given, before clamping.
    pub wait: Option<Duration>,
}

impl Blocking {
    /// How long this query may wait, with Consul's jitter added.
    fn timeout(&self) -> Duration {
        let wait = match self.wait {
            Some(wait) if !wait.is_zero() => wait.min(MAX_WAIT),
            _ => DEFAULT_WAIT,
        };
        let jitter_cap = u64::try_from((wait / 16).as_nanos()).unwrap_or(u64::MAX);
        wait + Duration::from_nanos(fastrand::u64(0..=jitter_cap))
    }
}

/// Runs a read as a blocking query. `index_of` must be cheap (it runs on
/// every relevant write while the query waits); `render` runs once, under the
/// same read lock as the index it is returned with. The index is at least 1,
/// as Consul guarantees. A query with an index counts in
/// `Shared::blocking_queries` while it runs.
pub(crate) async fn run<T>(
    shared: &Shared,
    topic: Topic,
    blocking: Blocking,
    index_of: impl Fn(&Store) -> u64,
    render: impl Fn(&Store) -> T,
) -> (u64, T) {
    let answer = |store: &Store| (index_of(store).max(1), render(store));
    if blocking.min_index == 0 {
        return answer(&shared.read());
    }
    // Counted until this returns or the request is dropped mid-wait.
    let _waiting = shared.blocking_queries.enter();
    let restores_at_start = shared.read().restores();
    let mut changes = shared.notifier().subscribe(topic);
    let deadline = Instant::now() + blocking.timeout();
    let mut expired = false;
    loop {
        {
            let store = shared.read();
            let ready = index_of(&store).max(1) > blocking.min_index
                // A snapshot restore ends every wait: the index went backwards.
                || store.restores() != restores_at_start;
            if ready || expired {
                return answer(&store);
            }
        }
        tokio::select! {
            changed = changes.changed() => expired = changed.is_err(),
            () = sleep_until(deadline) => expired = true,
        }
    }
}

/// Wakes the blocking queries waiting on the topics a write touched.
#[derive(Debug, Default)]
pub(crate) struct Notifier {
    topics: Mutex<HashMap<Topic, watch::Sender<()>>>,
}

impl Notifier {
    /// A receiver that sees every notification of `topic` from now on.
    fn subscribe(&self, topic: Topic) -> watch::Receiver<()> {
        let mut topics = self.topics.lock().unwrap_or_else(PoisonError::into_inner);
        topics.entry(topic).or_insert_with(|| watch::channel(()).0).subscribe()
    }

    /// Wakes the waiters of these topics; forgets topics nobody waits on.
    pub(crate) fn notify(&self, touched: impl IntoIterator<Item = Topic>) {
        let mut topics = self.topics.lock().unwrap_or_else(PoisonError::into_inner);
        for topic in touched {
            if let Some(sender) = topics.get(&topic) {
                if sender.receiver_count() == 0 {
                    topics.remove(&topic);
                } else {
                    sender.send_replace(());
                }
            }
        }
    }

    /// Wakes every waiter (after an index reset).
    pub(crate) fn notify_all(&self) {
        let mut topics = self.topics.lock().unwrap_or_else(PoisonError::into_inner);
        topics.retain(|_, sender| {
            sender.send_replace(());
            sender.receiver_count() > 0
        });
    }
}
