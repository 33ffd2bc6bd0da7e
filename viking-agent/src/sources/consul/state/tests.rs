//! The state machine driven by hand-made Consul answers: what the run loop is told, and
//! what the source is asked to do, for each kind of answer.

use std::collections::BTreeMap;

use super::{output::Output, *};
use crate::{
    model::ServiceChange,
    sources::{
        SourceChange,
        consul::wire::{Node, ServiceInstance, Weights},
    },
};

fn settings() -> Settings {
    Settings {
        tag: None,
        vip_range: "241.0.0.0/8".parse().unwrap(),
        keys: Keys::new("viking"),
        vip_ranges: VipRanges::default(),
        max_backends: 16,
        release_after: Duration::from_secs(3600),
        local_node: Some("this-host".into()),
    }
}

fn instance(service: &str, id: &str, port: i64, tags: &[&str]) -> ServiceInstance {
    ServiceInstance {
        id: id.into(),
        service: service.into(),
        address: "".into(),
        port,
        meta: None,
        tags: Some(tags.iter().map(|t| (*t).into()).collect()),
        weights: Some(Weights { passing: 1 }),
    }
}

/// A check of instance `service_id` (named `<service>-<n>` in these tests; empty for the
/// node's own check).
fn check(service_id: &str, status: &str) -> NodeCheck {
    let service = service_id.split('-').next().unwrap_or_default();
    NodeCheck { service_id: service_id.into(), service_name: service.into(), status: status.into() }
}

fn allocation(vip: &str, index: u64) -> Allocation {
    Allocation { vip: vip.parse().unwrap(), modify_index: index }
}

/// The state machine and the generations of the watches it asked for, as the watcher set
/// would run them.
struct Source {
    state: ConsulState,
    services: HashMap<String, u64>,
    checks: HashMap<String, u64>,
}

impl Source {
    fn new(settings: Settings) -> Self {
        Self { state: ConsulState::new(settings), services: HashMap::new(), checks: HashMap::new() }
    }

    /// The node list answers `names`.
    fn nodes(&mut self, names: &[&str]) -> NodePlan {
        let listed: Vec<CatalogNode> = names.iter().map(|n| CatalogNode { node: (*n).to_owned() }).collect();
        let plan = self.state.on_nodes(&listed);
        for (node, generation) in &plan.start {
            self.services.insert(node.clone(), *generation);
        }
        plan
    }

    /// `node`'s services watch answers; returns whether its checks watch was (re)started.
    fn services(&mut self, node: &str, address: &str, instances: &[ServiceInstance]) -> bool {
        let answer =
            NodeServices { node: Node { node: node.into(), address: address.into() }, services: instances.to_vec() };
        let restarted = self.state.on_node_services(node, self.services[node], Some(answer));
        if let Some(generation) = restarted {
            self.checks.insert(node.to_owned(), generation);
        }
        restarted.is_some()
    }

    /// `node`'s checks watch answers.
    fn checks(&mut self, node: &str, checks: &[NodeCheck]) {
        self.state.on_node_checks(node, self.checks[node], checks);
    }

    /// `node` runs `instances`, every check passing.
    fn serve(&mut self, node: &str, address: &str, instances: &[ServiceInstance]) {
        self.services(node, address, instances);
        self.checks(node, &[]);
    }
}

/// A source synced with `web` (VIP 241.0.0.10, one instance on n1) and `db` (241.0.0.20,
/// on n2).
fn synced() -> Source {
    let mut source = Source::new(settings());
    source.nodes(&["n1", "n2"]);
    source.state.on_vips(3, &[]);
    source.state.on_allocated("web", allocation("241.0.0.10", 5));
    source.state.on_allocated("db", allocation("241.0.0.20", 6));
    source.serve("n1", "10.0.0.1", &[instance("web", "web-1", 80, &[])]);
    source.serve("n2", "10.0.0.2", &[instance("db", "db-1", 5432, &[])]);
    let output = source.state.take_output();
    assert!(matches!(output.services, Some(SourceChange::Replace(ref s)) if s.services.len() == 2), "{output:?}");
    source
}

fn delta(output: Output) -> Vec<ServiceChange> {
    match output.services {
        Some(SourceChange::Delta(changes)) => changes,
        other => panic!("expected a delta, got {other:?}"),
    }
}

fn backends(change: &ServiceChange) -> Vec<String> {
    let ServiceChange::Upsert(service) = change else { panic!("expected an upsert: {change:?}") };
    service.backends.iter().map(|b| b.addr.to_string()).collect()
}

#[test]
fn nothing_is_reported_before_the_nodes_the_vips_and_every_nodes_first_answers() {
    let mut source = Source::new(settings());
    let plan = source.nodes(&["n2", "n1"]);
    assert_eq!(plan.start.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["n1", "n2"]);
    assert!(source.services(
        "n1",
        "10.0.0.1",
        &[instance("web", "web-1", 80, &[]), instance("consul", "c", 8300, &[])]
    ));
    source.checks("n1", &[]);
    source.serve("n2", "10.0.0.2", &[instance("db", "db-1", 5432, &[])]);
    assert!(source.state.take_allocations().is_empty(), "no allocation before the VIP records are read");
    assert!(source.state.take_output().services.is_none(), "not synced before the VIP records");
    source.state.on_vips(3, &[]);
    let requests: Vec<String> = source.state.take_allocations().into_iter().map(|r| r.name).collect();
    assert_eq!(requests, ["db", "web"], "consul itself gets no VIP");
    assert!(source.state.take_allocations().is_empty(), "asked for once");
    let output = source.state.take_output();
    assert!(source.state.is_synced());
    // Synced: the services without a VIP yet are added once allocated.
    assert!(matches!(output.services, Some(SourceChange::Replace(ref s)) if s.services.is_empty()), "{output:?}");
    source.state.on_allocated("web", allocation("241.0.0.10", 9));
    let changes = delta(source.state.take_output());
    assert!(matches!(&changes[..], [ServiceChange::Upsert(s)] if &*s.name == "web" && s.backends.len() == 1));
}

#[test]
fn a_node_whose_checks_have_not_answered_holds_the_sync() {
    let mut source = Source::new(settings());
    source.nodes(&["n1"]);
    source.state.on_vips(3, &[]);
    source.services("n1", "10.0.0.1", &[instance("web", "web-1", 80, &[])]);
    assert!(source.state.take_output().services.is_none());
    source.checks("n1", &[]);
    assert!(source.state.take_output().services.is_some());
}

#[test]
fn one_changed_service_is_one_change() {
    let mut source = synced();
    let two = [instance("web", "web-1", 80, &[]), instance("web", "web-2", 81, &[])];
    source.serve("n1", "10.0.0.1", &two);
    let changes = delta(source.state.take_output());
    assert!(matches!(&changes[..], [ServiceChange::Upsert(s)] if &*s.name == "web" && s.backends.len() == 2));
    // The same answers again change nothing.
    assert!(!source.services("n1", "10.0.0.1", &two), "no new instance: the checks watch keeps running");
    source.checks("n1", &[]);
    assert!(source.state.take_output().services.is_none());
}

#[test]
fn a_new_instance_is_served_only_after_a_checks_answer_read_after_it() {
    let mut source = synced();
    let stale = source.checks["n1"];
    let two = [instance("web", "web-1", 80, &[]), instance("web", "web-2", 8080, &[])];
    assert!(source.services("n1", "10.0.0.1", &two), "a new instance restarts the checks watch");
    assert!(source.state.take_output().services.is_none(), "web-2 is not confirmed yet: web is unchanged");
    // The stopped watch's last answer and failure come in late: both are ignored.
    source.state.on_node_checks("n1", stale, &[]);
    source.state.on_node_failure("n1", NodeWatch::Checks, stale, Some("connection reset".into()));
    assert!(source.state.take_output().services.is_none());
    assert_eq!(source.state.failing(), 0, "a stopped watch's failure is not kept");
    // The restarted watch: web-2 is still starting (critical), then passes.
    source.checks("n1", &[check("web-2", "critical")]);
    assert!(source.state.take_output().services.is_none());
    source.checks("n1", &[check("web-2", "passing")]);
    let changes = delta(source.state.take_output());
    assert_eq!(backends(&changes[0]), ["10.0.0.1:80", "10.0.0.1:8080"]);
}

#[test]
fn a_failing_node_check_takes_every_instance_on_the_node_out() {
    let mut source = synced();
    source.serve("n1", "10.0.0.1", &[instance("web", "web-1", 80, &[]), instance("api", "api-1", 81, &[])]);
    source.state.on_allocated("api", allocation("241.0.0.30", 7));
    source.state.take_output();
    source.checks("n1", &[check("", "critical")]);
    let changes = delta(source.state.take_output());
    assert_eq!(changes.len(), 2, "api and web: {changes:?}");
    assert!(changes.iter().all(|c| backends(c).is_empty()), "registered, but nothing passes: {changes:?}");
}

#[test]
fn a_new_port_moves_the_frontend_and_no_passing_instance_keeps_it_empty() {
    let mut source = synced();
    source.serve("n1", "10.0.0.1", &[instance("web", "web-1", 8080, &[])]);
    let changes = delta(source.state.take_output());
    assert!(
        matches!(&changes[..], [ServiceChange::Remove(old), ServiceChange::Upsert(new)] if old.port == 80 && new.frontend.port == 8080),
        "{changes:?}"
    );
    // No passing instance: the service stays, with no backend (connects are refused).
    source.checks("n1", &[check("web-1", "warning")]);
    let changes = delta(source.state.take_output());
    assert!(matches!(&changes[..], [ServiceChange::Upsert(s)] if s.frontend.port == 8080 && s.backends.is_empty()));
}

#[test]
fn a_service_that_leaves_is_removed_and_its_vip_released_after_the_grace_period() {
    let mut source = synced();
    source.serve("n1", "10.0.0.1", &[]);
    let changes = delta(source.state.take_output());
    assert!(matches!(&changes[..], [ServiceChange::Remove(f)] if f.port == 80));
    let now = Instant::now();
    assert!(source.state.due_releases(now).is_empty(), "within the grace period");
    let later = now + Duration::from_secs(3601);
    source.state.on_failure("nodes", Some("connection refused".into()));
    assert!(source.state.due_releases(later).is_empty(), "never during an outage");
    source.state.on_failure("nodes", None);
    let due: Vec<String> = source.state.due_releases(later).into_iter().map(|(name, _)| name).collect();
    assert_eq!(due, ["web"]);
    assert!(source.state.due_releases(later).is_empty(), "asked for once, not on every tick");
    source.state.on_released("web");
    assert!(source.state.due_releases(later + Duration::from_secs(3600)).is_empty());
}

#[test]
fn a_node_that_leaves_takes_its_instances_and_stops_its_watches() {
    let mut source = synced();
    let generation = source.services["n2"];
    source.state.on_node_failure("n2", NodeWatch::Services, generation, Some("timeout".into()));
    let plan = source.nodes(&["n1"]);
    assert_eq!(plan, NodePlan { start: vec![], stop: vec!["n2".into()] });
    assert_eq!(source.state.failing(), 0, "a stopped node's failures go with it");
    let changes = delta(source.state.take_output());
    assert!(matches!(&changes[..], [ServiceChange::Remove(f)] if f.port == 5432), "{changes:?}");
    // A late answer of its stopped watch changes nothing.
    assert_eq!(source.state.on_node_services("n2", generation, None), None);
    assert!(source.state.take_output().services.is_none());
}

#[test]
fn a_service_that_comes_back_keeps_its_vip() {
    let mut source = synced();
    source.serve("n1", "10.0.0.1", &[]);
    source.state.take_output();
    source.serve("n1", "10.0.0.1", &[instance("web", "web-1", 80, &[])]);
    assert!(source.state.take_allocations().is_empty(), "its VIP is still recorded");
    let changes = delta(source.state.take_output());
    assert!(matches!(&changes[..], [ServiceChange::Upsert(s)] if s.frontend.vip.to_string() == "241.0.0.10"));
    assert!(source.state.due_releases(Instant::now() + Duration::from_secs(7200)).is_empty());
}

#[test]
fn only_services_with_the_tag_get_a_vip() {
    let mut source = Source::new(Settings { tag: Some("viking".into()), ..settings() });
    source.nodes(&["n1"]);
    source.serve("n1", "10.0.0.1", &[instance("web", "web-1", 80, &["viking"]), instance("db", "db-1", 5432, &[])]);
    source.state.on_vips(3, &[]);
    let requests: Vec<String> = source.state.take_allocations().into_iter().map(|r| r.name).collect();
    assert_eq!(requests, ["web"]);
}

#[test]
fn declarations_are_reported_per_service_when_they_change() {
    let mut source = synced();
    source.serve("n1", "10.0.0.1", &[instance("web", "web-1", 80, &["connect_to=db"])]);
    let output = source.state.take_output();
    let expected = BTreeMap::from([("web-1".to_owned(), BTreeSet::from(["db".to_owned()]))]);
    assert_eq!(output.declarations, [("web".to_owned(), expected)]);
    source.serve("n1", "10.0.0.1", &[instance("web", "web-1", 80, &[])]);
    assert_eq!(source.state.take_output().declarations, [("web".to_owned(), BTreeMap::new())], "gone: an empty set");
    source.serve("n1", "10.0.0.1", &[instance("web", "web-1", 80, &[])]);
    assert!(source.state.take_output().declarations.is_empty());
}

#[test]
fn a_vip_record_that_changes_in_kv_moves_the_service() {
    let mut source = synced();
    let record = |vip: &str| {
        use base64::Engine as _;
        KvEntry {
            key: "viking/services/web".into(),
            value: Some(base64::engine::general_purpose::STANDARD.encode(vip)),
            modify_index: 30,
        }
    };
    let db = KvEntry { key: "viking/services/db".into(), ..record("241.0.0.20") };
    source.state.on_vips(31, &[record("241.0.0.11"), KvEntry { modify_index: 6, ..db }]);
    let changes = delta(source.state.take_output());
    assert!(
        matches!(&changes[..], [ServiceChange::Remove(old), ServiceChange::Upsert(new)]
            if old.vip.to_string() == "241.0.0.10" && new.frontend.vip.to_string() == "241.0.0.11"),
        "{changes:?}"
    );
}

#[test]
fn loopback_instances_count_on_this_hosts_node_only() {
    let mut source = synced();
    source.nodes(&["n1", "n2", "this-host", "n9"]);
    source.serve("this-host", "127.0.0.1", &[instance("web", "here", 80, &[])]);
    source.serve("n9", "127.0.0.1", &[instance("web", "there", 80, &[])]);
    let changes = delta(source.state.take_output());
    assert_eq!(backends(&changes[0]), ["10.0.0.1:80", "127.0.0.1:80"]);
}

#[test]
fn a_new_vip_keeps_the_backends_even_those_of_the_other_family_left_out_before() {
    let mut source = synced();
    // A second instance on an IPv6 node: the IPv4 VIP serves only the IPv4 one.
    source.nodes(&["n1", "n2", "n3"]);
    source.serve("n3", "fd00::3", &[instance("web", "web-3", 80, &[])]);
    assert!(source.state.take_output().services.is_none(), "the IPv4 VIP serves the IPv4 backend alone");
    // A new IPv4 VIP: the same backend, though no instance answered again.
    source.state.on_allocated("web", allocation("241.0.0.11", 7));
    let changes = delta(source.state.take_output());
    assert_eq!(backends(changes.last().unwrap()), ["10.0.0.1:80"]);
    // An IPv6 VIP (a record edited by hand): the instance left out before is served.
    source.state.on_allocated("web", allocation("fd00:f::11", 8));
    let changes = delta(source.state.take_output());
    assert_eq!(backends(changes.last().unwrap()), ["[fd00::3]:80"]);
    // db's one backend is IPv4: an IPv6 VIP serves none, and an IPv4 one it again.
    source.state.on_allocated("db", allocation("fd00:f::21", 9));
    let changes = delta(source.state.take_output());
    assert!(backends(changes.last().unwrap()).is_empty());
    source.state.on_allocated("db", allocation("241.0.0.21", 10));
    let changes = delta(source.state.take_output());
    assert_eq!(backends(changes.last().unwrap()), ["10.0.0.2:5432"], "db's backend moves with its VIP");
}
