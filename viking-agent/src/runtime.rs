//! The running agent's state, owned by one task: every source's services and their merge
//! ([`SourceSet`]), the single writers of the service maps ([`Reconciler`]) and of the
//! policy maps ([`PolicyWriter`]), the names DNS answers, and what it has already reported.
//! Updates flow through as changes: one service changing costs work for that service.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::IpAddr,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::sync::watch;
use viking_common::{AuditEvent, PolicyMode};

use crate::{
    allocator,
    config::{DockerSettings, LabelRule, Trusted},
    dataplane::{sock_destroy, tables::KernelTables},
    dns::NameTable,
    model::{Container, Frontend, Protocol, RuntimeScope, ServedServices, ServiceChange, ServiceName},
    policy::{self, trust::Trust, writer::PolicyWriter},
    reconcile::{ApplyReport, Reconciler, describe},
    sources::{SourceChange, SourceId, Update, merge::SourceSet},
};

/// An undeclared connect is logged at most once per this period per (container, VIP, port).
const AUDIT_LOG_PERIOD: Duration = Duration::from_secs(10);
/// (container, VIP, port) triples remembered before the stale ones are dropped.
const AUDIT_MEMORY: usize = 4096;
/// Services named one by one in the log per apply; a burst (an initial sync) is summed up.
const LOGGED_PER_APPLY: usize = 20;

/// The agent's state between updates.
#[derive(Debug)]
pub struct Runtime {
    reconciler: Reconciler<KernelTables>,
    policy: PolicyWriter,
    sources: SourceSet,
    expected: Vec<SourceId>,
    /// Whether the kernel was made to hold exactly the merged sources, once every expected
    /// source had reported. Until then nothing the kernel holds is removed.
    pruned: bool,
    /// Merged changes not applied yet, one per frontend (the latest wins).
    pending: BTreeMap<Frontend, ServiceChange>,
    /// `None` until Docker has listed its containers (the adopted policy stays until then).
    containers: Option<Vec<Container>>,
    /// The container runtime's parent cgroup, when Docker reported one.
    scope: Option<RuntimeScope>,
    /// `connect_to` tags: by Consul service, then by instance id.
    consul_declarations: BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
    docker: Option<DockerSettings>,
    cgroup: PathBuf,
    names: watch::Sender<Arc<NameTable>>,
    policy_problems: Vec<policy::PolicyProblem>,
    audit_logged: HashMap<(u64, IpAddr, u16, u8), (Instant, u64)>,
    policy_dirty: bool,
    metrics: crate::metrics::sources::AgentMetrics,
    /// When the oldest update not yet flushed arrived.
    pending_since: Option<Instant>,
}

/// How the runtime is set up.
#[derive(Debug)]
pub struct RuntimeOptions {
    /// Sources that must report before anything the kernel serves is removed.
    pub expected: Vec<SourceId>,
    /// The Docker source's settings, when it runs (otherwise containers have no policy).
    pub docker: Option<DockerSettings>,
    /// The cgroup the programs are attached to.
    pub cgroup: PathBuf,
    /// Where the run loop counts what it did.
    pub metrics: crate::metrics::sources::AgentMetrics,
}

impl Runtime {
    /// A runtime over adopted maps.
    pub fn new(reconciler: Reconciler<KernelTables>, policy: PolicyWriter, options: RuntimeOptions) -> Self {
        let names = NameTable::from_state(&reconciler.installed_state());
        Self {
            reconciler,
            policy,
            sources: SourceSet::default(),
            expected: options.expected,
            pruned: false,
            pending: BTreeMap::new(),
            containers: options.docker.is_none().then(Vec::new),
            scope: None,
            consul_declarations: BTreeMap::new(),
            docker: options.docker,
            cgroup: options.cgroup,
            names: watch::channel(Arc::new(names)).0,
            policy_problems: Vec::new(),
            audit_logged: HashMap::new(),
            policy_dirty: true,
            metrics: options.metrics,
            pending_since: None,
        }
    }

    /// What the kernel serves, as a desired state (after adoption: the previous agent's).
    pub fn installed_state(&self) -> crate::model::DesiredState {
        self.reconciler.installed_state()
    }

    /// What the kernel serves (adopted or applied).
    pub fn served(&self) -> &ServedServices {
        self.reconciler.served()
    }

    /// The cgroup the programs are attached to.
    pub fn cgroup(&self) -> &std::path::Path {
        &self.cgroup
    }

    /// The names DNS answers: exactly the services the kernel serves.
    pub fn names(&self) -> watch::Receiver<Arc<NameTable>> {
        self.names.subscribe()
    }

    /// What the metrics endpoint needs to know, from memory: the first `max_services`
    /// services with their kernel ids, map fill, readiness.
    pub fn inventory(&self, max_services: usize) -> crate::metrics::Inventory {
        let (slots, backends) = self.reconciler.fill();
        crate::metrics::Inventory {
            services: self.reconciler.views(max_services),
            service_count: self.reconciler.service_count(),
            slots,
            backends,
            sources_synced: self.pruned,
            containers_listed: self.containers.is_some(),
            sources: self.source_status(),
        }
    }

    /// Each configured source and whether its first report has been applied.
    fn source_status(&self) -> Vec<crate::metrics::status::SourceStatus> {
        let mut sources: Vec<crate::metrics::status::SourceStatus> = self
            .expected
            .iter()
            .map(|source| crate::metrics::status::SourceStatus {
                name: source.name().to_owned(),
                reported: self.sources.has_all(&[*source]),
            })
            .collect();
        if self.docker.is_some() {
            sources.push(crate::metrics::status::SourceStatus {
                name: "docker".to_owned(),
                reported: self.containers.is_some(),
            });
        }
        sources
    }

    /// Records an update; [`Runtime::flush`] applies it.
    pub fn handle(&mut self, update: Update) {
        self.pending_since.get_or_insert_with(Instant::now);
        match update {
            Update::Services { source, change } => {
                let merged = match change {
                    SourceChange::Replace(state) => self.sources.replace(source, state),
                    SourceChange::Delta(changes) => self.sources.apply(source, changes),
                };
                for conflict in merged.conflicts {
                    tracing::error!("{conflict}");
                }
                for change in merged.changes {
                    self.pending.insert(change.frontend(), change);
                }
            }
            Update::Containers { containers, scope } => {
                self.containers = Some(containers);
                self.scope = scope;
                self.policy_dirty = true;
            }
            Update::ConsulDeclarations { service, declarations } => {
                let changed = if declarations.is_empty() {
                    self.consul_declarations.remove(&service).is_some()
                } else {
                    self.consul_declarations.insert(service, declarations.clone()) != Some(declarations)
                };
                self.policy_dirty |= changed;
            }
        }
    }

    /// Applies what changed since the last flush: services first (declarations resolve to
    /// their VIPs, so the policy is rebuilt when services come or go), then the policy.
    pub fn flush(&mut self) {
        if self.apply_services() {
            self.policy_dirty = true;
        }
        if std::mem::take(&mut self.policy_dirty) {
            self.apply_policy();
        }
        if let Some(since) = self.pending_since.take() {
            self.metrics.update_to_kernel.observe(since.elapsed().as_secs_f64());
        }
    }

    /// Applies the pending service changes and logs what changed. Until every expected
    /// source has reported once, nothing the kernel serves is removed: a restarted agent
    /// must not flush services whose source (e.g. Consul) has not answered yet. The moment
    /// the last one reports, the kernel is made to hold exactly the merged sources (the one
    /// apply that costs work for every service). UDP sockets still connected to a backend
    /// that left every service are destroyed in the background, so their applications
    /// reconnect to a live backend (see `dataplane::sock_destroy`). Returns whether
    /// services appeared, disappeared or were renamed.
    fn apply_services(&mut self) -> bool {
        let started = Instant::now();
        let report = if !self.pruned && self.sources.has_all(&self.expected) {
            self.pruned = true;
            self.pending.clear();
            let report = self.reconciler.apply(&self.sources.merged());
            allocator::release_unused();
            report
        } else if self.pending.is_empty() {
            return false;
        } else {
            let reconciler = &self.reconciler;
            let keep_installed = !self.pruned;
            let changes: Vec<ServiceChange> = std::mem::take(&mut self.pending)
                .into_values()
                .filter(|c| !(keep_installed && matches!(c, ServiceChange::Remove(f) if reconciler.is_installed(f))))
                .collect();
            self.reconciler.apply_changes(changes)
        };
        log_report(&report, self.reconciler.service_count(), started.elapsed());
        self.metrics.reconcile_writes.inc_by(report.writes as u64);
        let names_changed = self.update_names(&report);
        if !report.released_backends.is_empty() {
            let (cgroup, gone) = (self.cgroup.clone(), report.released_backends);
            tokio::task::spawn_blocking(move || match sock_destroy::destroy_udp_connected_to(&cgroup, &gone) {
                Ok(0) => {}
                Ok(n) => tracing::info!("closed {n} UDP socket(s) connected to removed backends"),
                Err(err) => tracing::warn!("closing UDP sockets connected to removed backends: {err}"),
            });
        }
        names_changed
    }

    /// Brings the DNS names in step with what the report wrote; returns whether a name
    /// appeared, disappeared or moved.
    fn update_names(&mut self, report: &ApplyReport) -> bool {
        let mut updates: Vec<(Frontend, Option<&ServiceName>)> = Vec::new();
        updates.extend(report.removed.iter().map(|(_, frontend)| (*frontend, None)));
        updates.extend(report.added.iter().chain(&report.changed).map(|s| (s.frontend, Some(&s.name))));
        if updates.is_empty() {
            return false;
        }
        let mut changed = false;
        self.names.send_if_modified(|table| {
            // Copies the table only if a DNS query holds the current one at this moment.
            let table = Arc::make_mut(table);
            for (frontend, name) in updates {
                changed |= table.set(frontend, name);
            }
            changed
        });
        changed
    }

    fn apply_policy(&mut self) {
        let Some(containers) = &self.containers else { return };
        let trusted = Trusted::default();
        let trust = match &self.docker {
            Some(docker) => {
                Trust { default_mode: docker.policy, labels: docker.policy_labels, trusted: &docker.trusted }
            }
            None => Trust { default_mode: PolicyMode::Off, labels: LabelRule::default(), trusted: &trusted },
        };
        let inputs = policy::Inputs {
            containers,
            consul: &self.consul_declarations,
            services: self.reconciler.served(),
            trust,
            scope: self.scope,
        };
        let (desired, problems) = policy::build(&inputs);
        if problems != self.policy_problems {
            for problem in &problems {
                tracing::warn!("{problem}");
            }
            self.policy_problems = problems;
        }
        let (writes, errors) = self.policy.apply(&desired);
        self.metrics.containers_with_policy.set(i64::try_from(desired.modes.len()).unwrap_or(i64::MAX));
        if writes > 0 {
            tracing::info!(
                writes,
                containers_with_policy = desired.modes.len(),
                declarations = desired.allowed.len(),
                overlays = desired.overlays.len(),
                "container policy updated"
            );
        }
        for error in errors {
            tracing::error!("container policy entry not applied: {error}");
        }
    }

    /// Logs an undeclared connect, naming the container and the service.
    pub fn audit(&mut self, event: AuditEvent) {
        self.metrics.audit_events.inc();
        let vip = event.vip.to_ip();
        let port = u16::from_be(event.port_be);
        let now = Instant::now();
        if self.audit_logged.len() > AUDIT_MEMORY {
            self.audit_logged.retain(|_, (last, _)| now.duration_since(*last) < AUDIT_LOG_PERIOD);
        }
        let key = (event.cgroup_id, vip, port, event.protocol);
        let entry = self.audit_logged.entry(key).or_insert((now - AUDIT_LOG_PERIOD, 0));
        entry.1 += 1;
        if now.duration_since(entry.0) < AUDIT_LOG_PERIOD {
            return;
        }
        let repeats = std::mem::replace(entry, (now, 0)).1;
        let container = self.containers.iter().flatten().find(|c| c.cgroup_id == event.cgroup_id).map_or_else(
            || format!("cgroup {}", event.cgroup_id),
            |c| format!("{:?} (cgroup {})", c.display_name(), event.cgroup_id),
        );
        let service = self.reconciler.served().at(vip, port).map_or("(unknown)", |s| &*s.name);
        let protocol = Protocol::from_number(event.protocol).map_or("?", Protocol::name);
        let verdict =
            if PolicyMode::from_u8(event.mode) == PolicyMode::Enforce { "refused" } else { "allowed (audit)" };
        let address = std::net::SocketAddr::new(vip, port);
        let what = if event.flags & AuditEvent::UNKNOWN_CONTAINER != 0 {
            format!("connected to service {service:?} ({address}/{protocol}) before its policy was in the kernel")
        } else {
            format!("connected to undeclared service {service:?} ({address}/{protocol})")
        };
        let repeats = if repeats > 1 { format!(", {repeats} times since the last report") } else { String::new() };
        tracing::warn!("policy: container {container} {what}: {verdict}{repeats}");
    }
}

/// Logs what an apply changed (each service for a few, a count for a burst) and how long
/// it took.
fn log_report(report: &ApplyReport, installed: usize, took: Duration) {
    let lines = report
        .added
        .iter()
        .map(|s| format!("added {}", describe(s)))
        .chain(report.changed.iter().map(|s| format!("changed {}", describe(s))))
        .chain(report.removed.iter().map(|(name, frontend)| format!("removed {name} {frontend}")));
    let total = report.added.len() + report.changed.len() + report.removed.len();
    for line in lines.take(LOGGED_PER_APPLY) {
        tracing::info!("{line}");
    }
    if total > LOGGED_PER_APPLY {
        tracing::info!(
            added = report.added.len(),
            changed = report.changed.len(),
            removed = report.removed.len(),
            "and {} more service changes",
            total - LOGGED_PER_APPLY
        );
    }
    for failed in &report.failed {
        tracing::error!("not applied: {failed}");
    }
    if !report.is_noop() {
        let took_ms = took.as_secs_f64() * 1000.0;
        tracing::info!(writes = report.writes, took_ms, services = installed, "kernel maps updated");
    }
}
