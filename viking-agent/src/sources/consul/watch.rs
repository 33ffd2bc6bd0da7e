//! The blocking-query loop, following Consul's rules
//! (developer.hashicorp.com/consul/api-docs/features/blocking#implementation-details):
//!
//! - pass the last `X-Consul-Index` as `?index=` (the wait and its jitter are Consul's);
//! - if the index goes backwards (a snapshot restore, a new leader), reset it to 0; the
//!   index is Consul's Raft index, one for the whole cluster, so every other watch of the
//!   source starts over too ([`Restores`]): a query sent just after a restore blocks on its
//!   old, higher index, and would miss changes until its wait ends (minutes); a blocking
//!   query answered long before its wait with the index it was sent with is such a reset
//!   too (the new index met the old one), and counts as one;
//! - treat an index below 1 as 1, so a broken index cannot turn into a busy loop;
//! - a query may return with nothing changed: compare the content, not only the index (a
//!   hash of the answer's bytes, so a watch keeps 8 bytes, not a copy of the answer);
//! - rate-limit a loop that keeps returning at once without change;
//! - back off on errors, exponentially with jitter and a cap; honour 429's `Retry-After`.

use std::{
    future::Future,
    hash::{DefaultHasher, Hash, Hasher},
    sync::Arc,
    time::Duration,
};

use bytes::Bytes;
use tokio::{sync::watch as flag, time::Instant};

use super::client::{ConsulError, Indexed};
use crate::sources::backoff::{BACKOFF_CAP, Backoff};

/// First retry delay after an error.
const BACKOFF_START: Duration = Duration::from_millis(100);
/// A query answered faster than this without a change counts as returning "at once".
const IMMEDIATE: Duration = Duration::from_millis(50);
/// First pause after an immediate unchanged answer; doubles up to `BACKOFF_CAP`.
const RATE_LIMIT_START: Duration = Duration::from_millis(50);

/// What the index of a response means for the loop.
#[derive(Debug, PartialEq, Eq)]
pub enum IndexStep {
    /// The first response, or a new index.
    Advanced,
    /// Same index as before: nothing changed.
    Unchanged,
    /// The index went backwards: start over from 0 (the next query returns at once).
    Reset,
}

/// The index to block on, updated from each response.
#[derive(Debug, Default)]
pub struct BlockingIndex {
    last: Option<u64>,
}

impl BlockingIndex {
    /// `?index=` for the next query (`None` for the first one: return at once).
    pub fn next(&self) -> Option<u64> {
        self.last
    }

    /// Starts over from 0 (another watch saw the index go backwards).
    pub fn restart(&mut self) {
        if self.last.is_some() {
            self.last = Some(0);
        }
    }

    /// Takes the `X-Consul-Index` of a response.
    pub fn observe(&mut self, returned: u64) -> IndexStep {
        let returned = returned.max(1);
        match self.last {
            Some(last) if returned < last => {
                self.last = Some(0);
                IndexStep::Reset
            }
            Some(last) if returned == last => IndexStep::Unchanged,
            _ => {
                self.last = Some(returned);
                IndexStep::Advanced
            }
        }
    }
}

/// The index resets the watches of one source have seen, as a generation number: the
/// first watch to see the index go backwards starts a new generation, and every watch of
/// an older one starts over from index 0, in flight or pausing. A restore that wakes many
/// watches at once makes one generation, so each of them starts over once.
#[derive(Clone, Debug)]
pub struct Restores(Arc<flag::Sender<u64>>);

impl Default for Restores {
    fn default() -> Self {
        Self(Arc::new(flag::channel(0).0))
    }
}

impl Restores {
    /// A watch saw a reset while in generation `known`: the generation it is in now.
    fn announce(&self, known: u64) -> u64 {
        self.0.send_if_modified(|generation| {
            let new = *generation == known;
            if new {
                *generation += 1;
            }
            new
        });
        *self.0.borrow()
    }
}

/// Runs blocking queries forever, the first returning at once: `query(index)` is the
/// request, `deliver` gets each new content with its index (`None`: the key or prefix does
/// not exist), `report` hears about failures (`Some(error)`) and recoveries (`None`). A
/// reset seen by another watch of `restores` makes this one start over. `wait` is the
/// wait the blocking queries ask for.
pub async fn watch<Q, F>(
    mut query: Q,
    mut deliver: impl FnMut(u64, Option<Bytes>),
    mut report: impl FnMut(Option<&ConsulError>),
    restores: Restores,
    wait: Duration,
) where
    Q: FnMut(Option<u64>) -> F,
    F: Future<Output = Result<Indexed<Bytes>, ConsulError>>,
{
    let mut generations = restores.0.subscribe();
    let mut generation = *generations.borrow_and_update();
    let mut index = BlockingIndex::default();
    let mut errors = Backoff::new(BACKOFF_START);
    let mut spins = Backoff::new(RATE_LIMIT_START);
    let mut last: Option<u64> = None;
    let mut failing = false;
    loop {
        let started = Instant::now();
        let sent = index.next();
        let answer = tokio::select! {
            answer = query(sent) => answer,
            Ok(()) = generations.changed() => {
                let current = *generations.borrow_and_update();
                if current != generation {
                    generation = current;
                    index.restart();
                }
                continue;
            }
        };
        match answer {
            Ok(Indexed { index: returned, body }) => {
                errors.reset();
                if failing {
                    failing = false;
                    report(None);
                }
                let mut step = index.observe(returned);
                // Consul answers a blocking query before its wait only with a newer index,
                // or when its state was reset under the query (a snapshot restore abandons
                // every blocking query): the same index early is such a reset, one where
                // the new index happens to equal the old (a restore, then as many writes).
                let early = started.elapsed() < wait / 2;
                let reset_unseen = step == IndexStep::Unchanged && sent.is_some_and(|i| i > 0) && early;
                if reset_unseen {
                    index.restart();
                    step = IndexStep::Reset;
                }
                if step == IndexStep::Reset {
                    generation = restores.announce(generation);
                    generations.borrow_and_update();
                }
                // Content decides, not the index alone: after the index went backwards it
                // can climb back to the very number we hold while the data differs.
                let fingerprint = fingerprint(body.as_deref());
                if last != Some(fingerprint) {
                    spins.reset();
                    last = Some(fingerprint);
                    deliver(returned, body);
                } else if reset_unseen || (step == IndexStep::Unchanged && started.elapsed() < IMMEDIATE) {
                    // Rate-limited: a server that answers blocking queries at once, unchanged,
                    // must not make this a busy loop.
                    tokio::time::sleep(spins.next_delay()).await;
                }
            }
            Err(err) => {
                failing = true;
                report(Some(&err));
                let delay = match &err {
                    ConsulError::TooManyRequests { retry_after: Some(after), .. } => (*after).min(BACKOFF_CAP),
                    _ => errors.next_delay(),
                };
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// A hash of an answer (`None`: absent), to tell a changed answer from a repeated one.
fn fingerprint(body: Option<&[u8]>) -> u64 {
    let mut hasher = DefaultHasher::new();
    body.hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_follows_consuls_rules() {
        let mut index = BlockingIndex::default();
        assert_eq!(index.next(), None, "the first query does not block");
        assert_eq!(index.observe(10), IndexStep::Advanced);
        assert_eq!(index.next(), Some(10));
        assert_eq!(index.observe(10), IndexStep::Unchanged);
        assert_eq!(index.observe(12), IndexStep::Advanced);
        assert_eq!(index.observe(3), IndexStep::Reset, "backwards: start over");
        assert_eq!(index.next(), Some(0));
        assert_eq!(index.observe(3), IndexStep::Advanced);
        assert_eq!(index.next(), Some(3));
    }

    #[test]
    fn a_restart_blocks_no_more_and_a_first_query_stays_first() {
        let mut index = BlockingIndex::default();
        index.restart();
        assert_eq!(index.next(), None, "a watch that has not asked yet still asks without an index");
        index.observe(40);
        index.restart();
        assert_eq!(index.next(), Some(0), "after a restore elsewhere: return at once");
    }

    #[test]
    fn one_restore_seen_by_many_watches_makes_one_generation() {
        let restores = Restores::default();
        assert_eq!(restores.announce(0), 1, "the first watch to see it starts generation 1");
        assert_eq!(restores.announce(0), 1, "the others, still in 0, join it");
        assert_eq!(restores.announce(1), 2, "a later restore, seen in generation 1, is a new one");
    }

    /// Runs a watch over scripted answers (seconds before the answer, `index`, body) and
    /// returns the index each query was sent with and the bodies delivered, once the script
    /// is used up.
    async fn run_script(script: Vec<(u64, u64, &'static str)>) -> (Vec<Option<u64>>, Vec<String>) {
        let sent = Arc::new(std::sync::Mutex::new(Vec::new()));
        let delivered = Arc::new(std::sync::Mutex::new(Vec::new()));
        let answers = Arc::new(std::sync::Mutex::new(std::collections::VecDeque::from(script)));
        let watching = {
            let (sent, delivered) = (sent.clone(), delivered.clone());
            watch(
                move |index| {
                    sent.lock().unwrap().push(index);
                    let next = answers.lock().unwrap().pop_front();
                    async move {
                        let Some((after, index, body)) = next else { return std::future::pending().await };
                        tokio::time::sleep(Duration::from_secs(after)).await;
                        Ok(Indexed { index, body: Some(Bytes::from_static(body.as_bytes())) })
                    }
                },
                move |_, body| delivered.lock().unwrap().push(String::from_utf8_lossy(&body.unwrap()).into_owned()),
                |_| {},
                Restores::default(),
                Duration::from_secs(300),
            )
        };
        let _ = tokio::time::timeout(Duration::from_secs(3600), watching).await;
        let sent = sent.lock().unwrap().clone();
        let delivered = delivered.lock().unwrap().clone();
        (sent, delivered)
    }

    #[tokio::test(start_paused = true)]
    async fn a_blocking_query_answered_early_with_its_own_index_starts_over() {
        // A restore, then as many writes as there were: the index is back where it was, the
        // content is not. The early answer with the same index makes the next query start
        // from 0 and see the change, instead of blocking on an index nothing will pass.
        let (sent, delivered) = run_script(vec![(0, 5, "a"), (0, 5, "a"), (0, 5, "b")]).await;
        assert_eq!(sent[..3], [None, Some(5), Some(0)]);
        assert_eq!(delivered, ["a", "b"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_blocking_query_that_waited_its_wait_keeps_its_index() {
        // Consul's answer when nothing changed during the wait (300 s here) plus jitter.
        let (sent, delivered) = run_script(vec![(0, 5, "a"), (310, 5, "a")]).await;
        assert_eq!(sent[..3], [None, Some(5), Some(5)]);
        assert_eq!(delivered, ["a"]);
    }

    #[test]
    fn an_index_below_one_counts_as_one() {
        let mut index = BlockingIndex::default();
        assert_eq!(index.observe(0), IndexStep::Advanced);
        assert_eq!(index.next(), Some(1), "never block on index 0 again");
    }
}
