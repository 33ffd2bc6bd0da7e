//! Consul as a source: every service in Consul's catalog (optionally only those with a
//! tag) gets a stable VIP and its passing instances as backends.
//!
//! Tasks, all blocking queries (see `watch`):
//! - `/v1/catalog/services`: which services exist;
//! - `/v1/health/service/<name>?passing`, one per service: its usable instances;
//! - `/v1/kv/<prefix>/services/?recurse`: the VIPs every agent agreed on (see `vips`).
//!
//! One manager owns the state, allocates missing VIPs, releases VIPs of services gone for
//! longer than the grace period, and sends a full snapshot after every change (events that
//! arrive together are coalesced). A failing watch keeps its last good reading (fail
//! static), retries with backoff, and blocks VIP releases until every watch answers again.

mod client;
mod instances;
mod vips;
mod watch;
mod wire;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::Arc,
    time::Duration,
};

use tokio::{
    sync::{Semaphore, mpsc, watch as flag},
    task::JoinHandle,
    time::Instant,
};

use self::{
    client::{ConsulClient, ConsulError},
    instances::{Reading, ServiceShape},
    vips::{Allocation, Keys, VipTable},
    wire::{CatalogServices, HealthEntry, KvEntry},
};
use super::{Snapshot, SourceId, Update, backoff::Backoff};
use crate::{
    config::{AgentSettings, ConsulSettings, Limits},
    model::{DesiredState, Service},
};
pub use client::ConsulError as Error;

/// VIP allocations running at once (each is a few KV round trips).
const ALLOCATION_CONCURRENCY: usize = 32;
/// First (non-blocking) health queries running at once during the initial sync: few
/// enough that their connections are reused instead of opening one per service.
const INITIAL_CONCURRENCY: usize = 64;
/// Pause before each blocking catalog query: a burst of registrations then costs a few
/// catalog reads (each a full listing), not one per registration.
const CATALOG_PACE: Duration = Duration::from_millis(20);
/// The same for the VIP records, which every allocation (of any agent) changes; this
/// agent's own allocations reach it directly.
const VIP_RECORDS_PACE: Duration = Duration::from_millis(200);
/// Consul's own service: never given a VIP.
const CONSUL_SERVICE: &str = "consul";

/// Something a task learned.
enum Event {
    Catalog(CatalogServices),
    Health {
        name: String,
        entries: Vec<HealthEntry>,
    },
    Vips(Vec<KvEntry>),
    Allocated {
        name: String,
        allocation: Allocation,
    },
    Released {
        name: String,
    },
    /// A watch failed (`Some`) or recovered (`None`).
    Failure {
        watch: String,
        error: Option<String>,
    },
}

/// The Consul source.
#[derive(Debug)]
pub struct ConsulSource {
    settings: ConsulSettings,
    agent: AgentSettings,
    max_backends: u16,
    client: ConsulClient,
    keys: Keys,
}

impl ConsulSource {
    /// A source for `settings`; fails only when the client cannot be built (TLS files).
    pub fn new(settings: ConsulSettings, agent: AgentSettings, limits: &Limits) -> Result<Self, ConsulError> {
        let client = ConsulClient::new(&settings)?;
        let keys = Keys::new(&settings.kv_prefix);
        Ok(Self { settings, agent, max_backends: limits.max_backends_per_service, client, keys })
    }

    /// Watches Consul until `tx` closes, sending a full snapshot after every change.
    pub async fn run(self, tx: mpsc::Sender<Update>) {
        let (events_tx, mut events) = mpsc::unbounded_channel();
        let mut manager = Manager::new(self, events_tx.clone());
        let _catalog = manager.spawn_catalog_watch();
        let _vips = manager.spawn_vip_watch();
        let tick =
            (manager.source.settings.vip_release_after / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
        let mut release_tick = tokio::time::interval(tick);
        loop {
            tokio::select! {
                Some(event) = events.recv() => {
                    manager.handle(event);
                    while let Ok(event) = events.try_recv() {
                        manager.handle(event);
                    }
                    manager.allocate_missing();
                    if let Some(state) = manager.snapshot()
                        && tx.send(Update::Services(Snapshot { source: SourceId::Consul, state })).await.is_err() {
                            return;
                        }
                    if let Some(declarations) = manager.declarations()
                        && tx.send(Update::ConsulDeclarations(declarations)).await.is_err() {
                            return;
                        }
                }
                _ = release_tick.tick() => manager.release_stale(),
            }
        }
    }
}

/// The state of the Consul source, owned by one task.
struct Manager {
    source: ConsulSource,
    events: mpsc::UnboundedSender<Event>,
    /// Catalog services that get a VIP (after the tag filter and name check).
    services: Option<BTreeSet<String>>,
    health: HashMap<String, Reading>,
    /// The last shape seen per service, kept while no instance passes.
    shapes: HashMap<String, ServiceShape>,
    watchers: HashMap<String, JoinHandle<()>>,
    vips: VipTable,
    vips_loaded: bool,
    allocating: HashMap<String, JoinHandle<()>>,
    allocation_slots: Arc<Semaphore>,
    absent_since: HashMap<String, Instant>,
    failing: HashMap<String, String>,
    problems: HashMap<String, Vec<String>>,
    /// Limits the first health queries and holds the blocking ones until the initial sync.
    initial: Arc<Semaphore>,
    synced_tx: flag::Sender<bool>,
    last_sent: Option<DesiredState>,
    last_declarations: Option<BTreeMap<String, BTreeSet<String>>>,
    synced: bool,
    /// Each service as last built, kept (the same `Arc`) until something of it changes,
    /// so a snapshot after one change shares every other service with the previous one.
    built: HashMap<String, Arc<Service>>,
    /// Some event arrived since the last snapshot.
    dirty: bool,
}

impl Manager {
    fn new(source: ConsulSource, events: mpsc::UnboundedSender<Event>) -> Self {
        Self {
            source,
            events,
            services: None,
            health: HashMap::new(),
            shapes: HashMap::new(),
            watchers: HashMap::new(),
            vips: VipTable::default(),
            vips_loaded: false,
            allocating: HashMap::new(),
            allocation_slots: Arc::new(Semaphore::new(ALLOCATION_CONCURRENCY)),
            absent_since: HashMap::new(),
            failing: HashMap::new(),
            problems: HashMap::new(),
            initial: Arc::new(Semaphore::new(INITIAL_CONCURRENCY)),
            synced_tx: flag::channel(false).0,
            last_sent: None,
            last_declarations: None,
            synced: false,
            built: HashMap::new(),
            dirty: true,
        }
    }

    fn spawn_catalog_watch(&self) -> DropAbort {
        let client = self.source.client.clone();
        let events = self.events.clone();
        let failures = self.events.clone();
        DropAbort(tokio::spawn(watch::watch(
            move |index| {
                let client = client.clone();
                async move {
                    if index.is_some() {
                        tokio::time::sleep(CATALOG_PACE).await;
                    }
                    client.get::<CatalogServices>("/v1/catalog/services", &[], index).await
                }
            },
            move |body| {
                let _ = events.send(Event::Catalog(body.unwrap_or_default()));
            },
            move |error| report(&failures, "catalog", error),
        )))
    }

    fn spawn_vip_watch(&self) -> DropAbort {
        let client = self.source.client.clone();
        let path = format!("/v1/kv/{}", self.source.keys.services_prefix());
        let events = self.events.clone();
        let failures = self.events.clone();
        DropAbort(tokio::spawn(watch::watch(
            move |index| {
                let (client, path) = (client.clone(), path.clone());
                async move {
                    if index.is_some() {
                        tokio::time::sleep(VIP_RECORDS_PACE).await;
                    }
                    client.get::<Vec<KvEntry>>(&path, &[("recurse", "")], index).await
                }
            },
            move |body| {
                let _ = events.send(Event::Vips(body.unwrap_or_default()));
            },
            move |error| report(&failures, "vip allocations", error),
        )))
    }

    fn spawn_health_watch(&self, name: &str) -> JoinHandle<()> {
        let client = self.source.client.clone();
        let path = format!("/v1/health/service/{name}");
        let events = self.events.clone();
        let failures = self.events.clone();
        let (name, watch_name) = (name.to_owned(), format!("health of {name}"));
        let (initial, synced) = (self.initial.clone(), self.synced_tx.subscribe());
        tokio::spawn(watch::watch(
            move |index| {
                let (client, path, initial, mut synced) =
                    (client.clone(), path.clone(), initial.clone(), synced.clone());
                async move {
                    // The first answers of thousands of services come over a few reused
                    // connections; the long-lived blocking queries, one connection each,
                    // start once everything is known.
                    let _permit = match index {
                        None => initial.acquire_owned().await.ok(),
                        Some(_) => {
                            let _ = synced.wait_for(|done| *done).await;
                            None
                        }
                    };
                    client.get::<Vec<HealthEntry>>(&path, &[("passing", "")], index).await
                }
            },
            move |body| {
                let _ = events.send(Event::Health { name: name.clone(), entries: body.unwrap_or_default() });
            },
            move |error| report(&failures, &watch_name, error),
        ))
    }

    fn handle(&mut self, event: Event) {
        self.dirty = true;
        match event {
            Event::Catalog(catalog) => self.take_catalog(&catalog),
            Event::Health { name, entries } => {
                let reading = instances::read(&name, &entries, &self.source.agent, self.source.max_backends);
                if let Some(shape) = &reading.shape {
                    self.shapes.insert(name.clone(), shape.clone());
                }
                self.log_problems(&name, reading.problems.clone());
                self.built.remove(&name);
                self.health.insert(name, reading);
            }
            Event::Vips(entries) => {
                let problems = self.vips.load(&self.source.keys, &entries, self.source.settings.vip_range);
                self.log_problems("(vip allocations)", problems);
                self.vips_loaded = true;
                let vips = &self.vips;
                self.built.retain(|name, service| vips.get(name).is_some_and(|a| a.vip == service.frontend.vip));
            }
            Event::Allocated { name, allocation } => {
                self.allocating.remove(&name);
                tracing::info!("consul service {name:?} has VIP {}", allocation.vip);
                self.built.remove(&name);
                self.vips.insert(&name, allocation);
            }
            Event::Released { name } => {
                tracing::info!("released the VIP of consul service {name:?}, gone for longer than the grace period");
                self.vips.remove(&name);
                self.built.remove(&name);
                self.absent_since.remove(&name);
            }
            Event::Failure { watch, error: Some(error) } => {
                if self.failing.is_empty() {
                    tracing::error!("consul: {error}; keeping the last good state, retrying with backoff");
                }
                self.failing.insert(watch, error);
            }
            Event::Failure { watch, error: None } => {
                self.failing.remove(&watch);
                if self.failing.is_empty() {
                    tracing::info!("consul reachable again");
                }
            }
        }
    }

    /// Starts and stops per-service watches to follow the catalog.
    fn take_catalog(&mut self, catalog: &CatalogServices) {
        let tag = self.source.settings.tag.clone();
        let mut wanted = BTreeSet::new();
        for (name, tags) in catalog {
            if name == CONSUL_SERVICE || tag.as_ref().is_some_and(|t| !tags.contains(t)) {
                continue;
            }
            if let Err(reason) = crate::config::check_name(name) {
                self.log_problems(name, vec![format!("consul service name {name:?}: {reason}; service skipped")]);
                continue;
            }
            wanted.insert(name.clone());
        }
        let gone: Vec<String> = self.watchers.keys().filter(|n| !wanted.contains(*n)).cloned().collect();
        for name in gone {
            if let Some(watcher) = self.watchers.remove(&name) {
                watcher.abort();
            }
            if let Some(allocation) = self.allocating.remove(&name) {
                allocation.abort();
            }
            self.health.remove(&name);
            self.built.remove(&name);
            self.problems.remove(&name);
            // Its aborted watch will never report a recovery.
            if self.failing.remove(&format!("health of {name}")).is_some() && self.failing.is_empty() {
                tracing::info!("consul reachable again");
            }
            tracing::info!("consul service {name:?} left the catalog");
        }
        for name in &wanted {
            if !self.watchers.contains_key(name) {
                let watcher = self.spawn_health_watch(name);
                self.watchers.insert(name.clone(), watcher);
            }
            self.absent_since.remove(name);
        }
        self.services = Some(wanted);
    }

    /// Starts an allocation for every wanted service without a VIP.
    fn allocate_missing(&mut self) {
        let (Some(services), true) = (&self.services, self.vips_loaded) else {
            return;
        };
        let missing: Vec<String> = services
            .iter()
            .filter(|n| self.vips.get(n).is_none() && !self.allocating.contains_key(*n))
            .cloned()
            .collect();
        if missing.is_empty() {
            return;
        }
        // The tasks work from a snapshot of what is taken; KV check-and-set makes the final
        // decision anyway.
        let taken = Arc::new(self.vips.clone());
        for name in missing {
            let (client, keys, range) =
                (self.source.client.clone(), self.source.keys.clone(), self.source.settings.vip_range);
            let (events, slots, taken) = (self.events.clone(), self.allocation_slots.clone(), taken.clone());
            let task_name = name.clone();
            let task = tokio::spawn(async move {
                let Ok(_slot) = slots.acquire_owned().await else { return };
                let mut backoff = Backoff::new(Duration::from_millis(200));
                loop {
                    match vips::allocate(&client, &keys, &taken, range, &task_name).await {
                        Ok(allocation) => {
                            let _ = events.send(Event::Allocated { name: task_name, allocation });
                            return;
                        }
                        Err(err) => {
                            tracing::warn!("allocating a VIP for consul service {task_name:?}: {err}; retrying");
                            tokio::time::sleep(backoff.next_delay()).await;
                        }
                    }
                }
            });
            self.allocating.insert(name, task);
        }
    }

    /// Releases, with check-and-set, the VIPs of services absent from a readable catalog
    /// for longer than the grace period.
    fn release_stale(&mut self) {
        let Some(services) = &self.services else { return };
        if !self.failing.is_empty() {
            // An outage must not look like every service leaving.
            return;
        }
        let now = Instant::now();
        let grace = self.source.settings.vip_release_after;
        for (name, allocation) in self.vips.iter() {
            if services.contains(name) {
                continue;
            }
            let since = *self.absent_since.entry(name.clone()).or_insert(now);
            if now.duration_since(since) < grace {
                continue;
            }
            let (client, keys, events) = (self.source.client.clone(), self.source.keys.clone(), self.events.clone());
            let (name, allocation) = (name.clone(), *allocation);
            tokio::spawn(async move {
                match vips::release(&client, &keys, &name, allocation).await {
                    Ok(true) => {
                        let _ = events.send(Event::Released { name });
                    }
                    // Changed meanwhile (re-allocated, or released by another agent).
                    Ok(false) => {}
                    Err(err) => tracing::warn!("releasing the VIP of consul service {name:?}: {err}"),
                }
            });
        }
    }

    /// The desired state, once the first full sync is done and when it changed.
    fn snapshot(&mut self) -> Option<DesiredState> {
        if !std::mem::take(&mut self.dirty) {
            return None;
        }
        let services = self.services.as_ref()?;
        if !self.synced {
            // Full sync: the catalog, the VIP table and every service's first health answer.
            if !self.vips_loaded || !services.iter().all(|n| self.health.contains_key(n)) {
                return None;
            }
            self.synced = true;
            self.synced_tx.send_replace(true);
            tracing::info!(services = services.len(), "consul: initial sync done");
        }
        let mut state = DesiredState::default();
        for name in services {
            if let Some(service) = self.built.get(name) {
                state.services.insert(service.frontend, service.clone());
                continue;
            }
            let (Some(allocation), Some(shape)) = (self.vips.get(name), self.shapes.get(name)) else {
                continue;
            };
            let backends = self.health.get(name).map(|r| r.backends.as_slice()).unwrap_or_default();
            let (service, problem) = instances::service(name, allocation.vip, shape, backends);
            if let Some(problem) = problem {
                tracing::warn!("{problem}");
            }
            let service = Arc::new(service);
            self.built.insert(name.clone(), service.clone());
            state.services.insert(service.frontend, service);
        }
        if self.last_sent.as_ref() == Some(&state) {
            return None;
        }
        self.last_sent = Some(state.clone());
        Some(state)
    }

    /// The `connect_to` tags of every instance, when they changed since last sent.
    fn declarations(&mut self) -> Option<BTreeMap<String, BTreeSet<String>>> {
        let none_now = self.health.values().all(|r| r.declarations.is_empty());
        if !self.synced || (none_now && self.last_declarations.as_ref().is_some_and(BTreeMap::is_empty)) {
            return None;
        }
        let all: BTreeMap<String, BTreeSet<String>> =
            self.health.values().flat_map(|r| r.declarations.iter().map(|(k, v)| (k.clone(), v.clone()))).collect();
        if self.last_declarations.as_ref() == Some(&all) {
            return None;
        }
        self.last_declarations = Some(all.clone());
        Some(all)
    }

    /// Logs a service's problems when they differ from the last ones logged for it.
    fn log_problems(&mut self, key: &str, problems: Vec<String>) {
        if self.problems.get(key) == Some(&problems) {
            return;
        }
        for problem in &problems {
            tracing::warn!("{problem}");
        }
        self.problems.insert(key.to_owned(), problems);
    }
}

/// Sends a watch's failure or recovery to the manager.
fn report(events: &mpsc::UnboundedSender<Event>, watch: &str, error: Option<&ConsulError>) {
    let _ = events.send(Event::Failure { watch: watch.to_owned(), error: error.map(ToString::to_string) });
}

/// Aborts a task when dropped (the source's long-lived watches).
struct DropAbort(JoinHandle<()>);

impl Drop for DropAbort {
    fn drop(&mut self) {
        self.0.abort();
    }
}
