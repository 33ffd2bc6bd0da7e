//! The watcher set: the Consul source's blocking queries and the connections they use.
//!
//! - `/v1/catalog/services`: which services exist. Its answer lists every service and comes
//!   back after any registration anywhere, so it is paced and compared as a hash of its
//!   bytes before anything is decoded.
//! - `/v1/kv/<prefix>/services/?recurse`: the VIPs every agent agreed on. This agent's own
//!   allocations reach it directly, so this listing is paced slowly (other agents'
//!   releases, hand edits).
//! - `/v1/health/service/<name>?passing`, one per service: its usable instances. An answer
//!   is one service's instances, so a change costs work for that service only. At start
//!   the first answers come from a snapshot (`snapshot`: a few requests per node instead
//!   of one per service), and these queries start blocking at once.
//!
//! Over HTTPS the watches are HTTP/2 streams on a few connections the client opens as they
//! fill (Consul's HTTPS API, like Go's HTTP/2 server, allows 250 concurrent streams per
//! connection), so 10,000 services cost about 41 connections. Over plain HTTP/1.1 every
//! outstanding request needs its own connection: one per service.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use tokio::{
    sync::{Semaphore, mpsc, watch as flag},
    task::JoinHandle,
};

use super::{
    Event,
    client::{ConsulClient, ConsulError, decode},
    state::health_watch,
    vips::Keys,
    watch,
    wire::{CatalogServices, HealthEntry, KvEntry},
};
/// First (non-blocking) health queries running at once during the initial sync: over
/// HTTP/1.1, few enough that their connections are reused instead of opening one per
/// service.
const INITIAL_CONCURRENCY: usize = 64;
/// Pause before each blocking catalog query: a burst of registrations costs a few catalog
/// reads (each a full listing), at most 20 a second, not one per registration. (A snapshot
/// restore that lands during the pause ends it: see `watch::Restores`.)
const CATALOG_PACE: Duration = Duration::from_millis(50);
/// The same for the VIP records (a full listing too).
const VIP_RECORDS_PACE: Duration = Duration::from_secs(5);

/// The running watches of the Consul source.
#[derive(Debug)]
pub struct Watchers {
    client: ConsulClient,
    health: std::collections::HashMap<String, JoinHandle<()>>,
    events: mpsc::UnboundedSender<Event>,
    /// Limits the first health queries.
    initial: Arc<Semaphore>,
    /// Holds the blocking health queries until the initial sync is done.
    synced: flag::Sender<bool>,
    /// Index resets seen by any watch: every watch starts over.
    restores: watch::Restores,
}

impl Watchers {
    /// No watch yet; answers go to `events`.
    pub fn new(client: ConsulClient, events: mpsc::UnboundedSender<Event>) -> Self {
        Self {
            client,
            health: std::collections::HashMap::new(),
            events,
            initial: Arc::new(Semaphore::new(INITIAL_CONCURRENCY)),
            synced: flag::channel(false).0,
            restores: watch::Restores::default(),
        }
    }

    /// Lets the health watches start blocking (after the initial sync).
    pub fn set_synced(&self) {
        self.synced.send_if_modified(|done| !std::mem::replace(done, true));
    }

    /// Watches the catalog's service list.
    pub fn watch_catalog(&self) -> DropAbort {
        let client = self.client.clone();
        let (events, failures) = (self.events.clone(), self.events.clone());
        DropAbort::spawn(watch::watch(
            None,
            move |index| {
                let client = client.clone();
                async move {
                    if index.is_some() {
                        tokio::time::sleep(CATALOG_PACE).await;
                    }
                    client.get_bytes("/v1/catalog/services", &[], index).await
                }
            },
            decoded(events.clone(), "catalog".into(), move |_, body| {
                let catalog = body.as_deref().map(decode::<CatalogServices>).transpose()?;
                let _ = events.send(Event::Catalog(catalog.unwrap_or_default()));
                Ok(())
            }),
            move |error| report(&failures, "catalog", error),
            self.restores.clone(),
        ))
    }

    /// Watches the VIP records.
    pub fn watch_vips(&self, keys: &Keys) -> DropAbort {
        let client = self.client.clone();
        let path = format!("/v1/kv/{}", keys.services_prefix());
        let (events, failures) = (self.events.clone(), self.events.clone());
        DropAbort::spawn(watch::watch(
            None,
            move |index| {
                let (client, path) = (client.clone(), path.clone());
                async move {
                    if index.is_some() {
                        tokio::time::sleep(VIP_RECORDS_PACE).await;
                    }
                    client.get_bytes(&path, &[("recurse", "")], index).await
                }
            },
            decoded(events.clone(), "vip allocations".into(), move |index, body| {
                let entries = body.as_deref().map(decode::<Vec<KvEntry>>).transpose()?;
                let _ = events.send(Event::Vips { index, entries: entries.unwrap_or_default() });
                Ok(())
            }),
            move |error| report(&failures, "vip allocations", error),
            self.restores.clone(),
        ))
    }

    /// Starts the health watch of `name` (if not running), its first query blocking at
    /// `first_index` when the service's first answer came from a snapshot.
    pub fn watch_health(&mut self, name: &str, first_index: Option<u64>) {
        if self.health.contains_key(name) {
            return;
        }
        let client = self.client.clone();
        let path = format!("/v1/health/service/{name}");
        let (events, failures) = (self.events.clone(), self.events.clone());
        let (owned, watch_name) = (name.to_owned(), health_watch(name));
        let (initial, synced) = (self.initial.clone(), self.synced.subscribe());
        let task = tokio::spawn(watch::watch(
            first_index,
            move |index| {
                let (client, path, initial, mut synced) =
                    (client.clone(), path.clone(), initial.clone(), synced.clone());
                async move {
                    let _permit = match index {
                        None => initial.acquire_owned().await.ok(),
                        Some(_) => {
                            let _ = synced.wait_for(|done| *done).await;
                            None
                        }
                    };
                    client.get_bytes(&path, &[("passing", "")], index).await
                }
            },
            decoded(events.clone(), watch_name.clone(), move |_, body| {
                let entries = body.as_deref().map(decode::<Vec<HealthEntry>>).transpose()?;
                let _ = events.send(Event::Health { name: owned.clone(), entries: entries.unwrap_or_default() });
                Ok(())
            }),
            move |error| report(&failures, &watch_name, error),
            self.restores.clone(),
        ));
        self.health.insert(name.to_owned(), task);
    }

    /// Stops the health watch of `name`.
    pub fn unwatch_health(&mut self, name: &str) {
        if let Some(task) = self.health.remove(name) {
            task.abort();
        }
    }
}

impl Drop for Watchers {
    fn drop(&mut self) {
        for task in self.health.values() {
            task.abort();
        }
    }
}

/// Sends a watch's failure or recovery to the source.
fn report(events: &mpsc::UnboundedSender<Event>, watch: &str, error: Option<&ConsulError>) {
    let _ = events.send(Event::Failure { watch: watch.to_owned(), error: error.map(ToString::to_string) });
}

/// Wraps a watch's delivery: an answer that is not what the API documents counts as a
/// failing watch (its last good reading stays) until an answer decodes again.
fn decoded(
    events: mpsc::UnboundedSender<Event>,
    watch: String,
    mut deliver: impl FnMut(u64, Option<Bytes>) -> Result<(), String>,
) -> impl FnMut(u64, Option<Bytes>) {
    let mut failing = false;
    move |index, body| match deliver(index, body) {
        Ok(()) if std::mem::take(&mut failing) => report(&events, &watch, None),
        Ok(()) => {}
        Err(detail) => {
            failing = true;
            let error = ConsulError::Decode { url: watch.clone(), detail };
            report(&events, &watch, Some(&error));
        }
    }
}

/// Aborts a task when dropped (the source's long-lived watches).
#[derive(Debug)]
pub struct DropAbort(JoinHandle<()>);

impl DropAbort {
    /// Runs `task` until it ends or this is dropped.
    pub fn spawn(task: impl std::future::Future<Output = ()> + Send + 'static) -> Self {
        Self(tokio::spawn(task))
    }
}

impl Drop for DropAbort {
    fn drop(&mut self) {
        self.0.abort();
    }
}
