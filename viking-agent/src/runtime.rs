//! The running agent's state, owned by one task: the latest update of every source, the
//! single writers of the service maps ([`Reconciler`]) and of the policy maps
//! ([`PolicyWriter`]), and what it has already reported.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::IpAddr,
    path::PathBuf,
    time::{Duration, Instant},
};

use viking_common::{AuditEvent, PolicyMode};

use crate::{
    dataplane::{sock_destroy, tables::KernelTables},
    model::{DesiredState, Protocol},
    policy::{self, writer::PolicyWriter},
    reconcile::Reconciler,
    sources::{SourceId, SourceSet, Update, docker::Container},
};

/// An undeclared connect is logged at most once per this period per (container, VIP, port).
const AUDIT_LOG_PERIOD: Duration = Duration::from_secs(10);
/// (container, VIP, port) triples remembered before the stale ones are dropped.
const AUDIT_MEMORY: usize = 4096;

/// The agent's state between updates.
#[derive(Debug)]
pub struct Runtime {
    reconciler: Reconciler<KernelTables>,
    policy: PolicyWriter,
    sources: SourceSet,
    expected: Vec<SourceId>,
    /// `None` until Docker has listed its containers (the adopted policy stays until then).
    containers: Option<Vec<Container>>,
    consul_declarations: BTreeMap<String, BTreeSet<String>>,
    default_mode: PolicyMode,
    cgroup: PathBuf,
    served: DesiredState,
    policy_problems: Vec<String>,
    audit_logged: HashMap<(u64, IpAddr, u16, u8), (Instant, u64)>,
    services_dirty: bool,
    policy_dirty: bool,
    /// Services appeared or disappeared (not only backends changed) since the last
    /// [`Runtime::take_names_changed`].
    names_changed: bool,
}

/// How the runtime is set up.
#[derive(Debug)]
pub struct RuntimeOptions {
    /// Sources that must report before anything the kernel serves is removed.
    pub expected: Vec<SourceId>,
    /// Whether a Docker source runs (otherwise containers have no policy).
    pub docker: bool,
    /// Mode of containers without a `viking.policy` label.
    pub default_mode: PolicyMode,
    /// The cgroup the programs are attached to.
    pub cgroup: PathBuf,
}

impl Runtime {
    /// A runtime over adopted maps.
    pub fn new(reconciler: Reconciler<KernelTables>, policy: PolicyWriter, options: RuntimeOptions) -> Self {
        Self {
            reconciler,
            policy,
            sources: SourceSet::default(),
            expected: options.expected,
            containers: (!options.docker).then(Vec::new),
            consul_declarations: BTreeMap::new(),
            default_mode: options.default_mode,
            cgroup: options.cgroup,
            served: DesiredState::default(),
            policy_problems: Vec::new(),
            audit_logged: HashMap::new(),
            services_dirty: false,
            policy_dirty: true,
            names_changed: true,
        }
    }

    /// What the kernel serves (adopted or applied).
    pub fn installed_state(&self) -> DesiredState {
        self.reconciler.installed_state()
    }

    /// The services the kernel serves, as last applied.
    pub fn served(&self) -> &DesiredState {
        &self.served
    }

    /// Records an update; [`Runtime::flush`] applies it.
    pub fn handle(&mut self, update: Update) {
        match update {
            Update::Services(snapshot) => {
                self.sources.update(snapshot);
                self.services_dirty = true;
            }
            Update::Containers(containers) => {
                self.containers = Some(containers);
                self.policy_dirty = true;
            }
            Update::ConsulDeclarations(declarations) => {
                self.consul_declarations = declarations;
                self.policy_dirty = true;
            }
        }
    }

    /// Whether services appeared or disappeared since the last call (what name lookups
    /// depend on; a change of backends does not count).
    pub fn take_names_changed(&mut self) -> bool {
        std::mem::take(&mut self.names_changed)
    }

    /// Applies what changed since the last flush: services first (declarations resolve to
    /// their VIPs, so the policy is rebuilt when services come or go), then the policy.
    pub fn flush(&mut self) {
        if self.services_dirty {
            self.services_dirty = false;
            if self.apply_services() {
                self.names_changed = true;
                self.policy_dirty = true;
            }
        }
        if self.policy_dirty {
            self.policy_dirty = false;
            self.apply_policy();
        }
    }

    /// Applies the merged sources and logs what changed. Until every expected source has
    /// reported once, nothing the kernel serves is removed: a restarted agent must not
    /// flush services whose source (e.g. Consul) has not answered yet. UDP sockets still
    /// connected to a backend that left every service are destroyed in the background, so
    /// their applications reconnect to a live backend (see `dataplane::sock_destroy`).
    /// Returns whether services appeared or disappeared.
    fn apply_services(&mut self) -> bool {
        let (mut desired, conflicts) = self.sources.merged();
        for conflict in conflicts {
            tracing::error!("{conflict}");
        }
        if !self.sources.has_all(&self.expected) {
            for (frontend, service) in self.reconciler.installed_state().services {
                desired.services.entry(frontend).or_insert(service);
            }
        }
        let report = self.reconciler.apply(&desired);
        for added in &report.added {
            tracing::info!("added {added}");
        }
        for changed in &report.changed {
            tracing::info!("changed {changed}");
        }
        for removed in &report.removed {
            tracing::info!("removed {removed}");
        }
        for failed in &report.failed {
            tracing::error!("not applied: {failed}");
        }
        if !report.is_noop() {
            tracing::info!(writes = report.writes, services = self.reconciler.service_count(), "kernel maps updated");
        }
        // What the kernel holds: a service that could not be written is not served (DNS
        // and policy must not point at a VIP that is not redirected).
        desired.services.retain(|frontend, _| self.reconciler.is_installed(frontend));
        self.served = desired;
        let names_changed = !report.added.is_empty() || !report.removed.is_empty();
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

    fn apply_policy(&mut self) {
        let Some(containers) = &self.containers else { return };
        let inputs = policy::Inputs {
            containers,
            consul: &self.consul_declarations,
            services: &self.served,
            default_mode: self.default_mode,
        };
        let (desired, problems) = policy::build(&inputs);
        if problems != self.policy_problems {
            for problem in &problems {
                tracing::warn!("{problem}");
            }
            self.policy_problems = problems;
        }
        let (writes, errors) = self.policy.apply(&desired);
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
        let service = self
            .served
            .services
            .values()
            .find(|s| s.frontend.vip == vip && s.frontend.port == port)
            .map_or("(unknown)", |s| s.name.as_str());
        let protocol = Protocol::from_number(event.protocol).map_or("?", Protocol::name);
        let verdict =
            if PolicyMode::from_u8(event.mode) == PolicyMode::Enforce { "refused" } else { "allowed (audit)" };
        tracing::warn!(
            "policy: container {container} connected to undeclared service {service:?} ({}/{protocol}): {verdict}{}",
            std::net::SocketAddr::new(vip, port),
            if repeats > 1 { format!(", {repeats} times since the last report") } else { String::new() }
        );
    }
}
