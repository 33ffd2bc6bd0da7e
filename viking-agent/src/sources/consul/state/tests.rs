//! The state machine driven by hand-made Consul answers: what the run loop is told, and
//! what the source is asked to do, for each kind of answer.

use std::collections::BTreeMap;

use super::*;
use crate::sources::consul::wire::{Node, ServiceInstance, Weights};

fn settings() -> Settings {
    Settings {
        tag: None,
        vip_range: "241.0.0.0/8".parse().unwrap(),
        keys: Keys::new("viking"),
        agent: AgentSettings::default(),
        max_backends: 16,
        release_after: Duration::from_secs(3600),
        local_node: Some("this-host".into()),
    }
}

fn instance(service: &str, id: &str, node: &str, address: &str, port: i64, tags: &[&str]) -> HealthEntry {
    HealthEntry {
        node: Node { node: node.into(), address: address.into() },
        service: ServiceInstance {
            id: id.into(),
            service: service.into(),
            address: String::new(),
            port,
            meta: None,
            tags: Some(tags.iter().map(|t| (*t).to_owned()).collect()),
            weights: Some(Weights { passing: 1 }),
        },
    }
}

fn catalog(names: &[&str]) -> CatalogServices {
    names.iter().map(|n| ((*n).to_owned(), Vec::new())).collect()
}

fn allocation(vip: &str, index: u64) -> Allocation {
    Allocation { vip: vip.parse().unwrap(), modify_index: index }
}

/// A state synced with `web` (VIP 241.0.0.10, one instance) and `db` (241.0.0.20).
fn synced() -> ConsulState {
    let mut state = ConsulState::new(settings());
    state.on_catalog(&catalog(&["web", "db"]));
    state.on_vips(3, &[]);
    state.on_allocated("web", allocation("241.0.0.10", 5));
    state.on_allocated("db", allocation("241.0.0.20", 6));
    state.on_health("web", &[instance("web", "web-1", "n1", "10.0.0.1", 80, &[])]);
    state.on_health("db", &[instance("db", "db-1", "n2", "10.0.0.2", 5432, &[])]);
    let output = state.take_output();
    assert!(matches!(output.services, Some(SourceChange::Replace(ref s)) if s.services.len() == 2), "{output:?}");
    state
}

fn delta(output: Output) -> Vec<ServiceChange> {
    match output.services {
        Some(SourceChange::Delta(changes)) => changes,
        other => panic!("expected a delta, got {other:?}"),
    }
}

#[test]
fn nothing_is_reported_before_the_catalog_the_vips_and_every_first_answer() {
    let mut state = ConsulState::new(settings());
    let plan = state.on_catalog(&catalog(&["web", "db", "consul"]));
    assert_eq!(plan.start, ["db", "web"], "consul itself gets no VIP");
    assert!(state.take_allocations().is_empty(), "no allocation before the VIP records are read");
    state.on_vips(3, &[]);
    let requests: Vec<String> = state.take_allocations().into_iter().map(|r| r.name).collect();
    assert_eq!(requests, ["db", "web"]);
    assert!(state.take_allocations().is_empty(), "asked for once");
    state.on_health("web", &[instance("web", "web-1", "n1", "10.0.0.1", 80, &[])]);
    assert!(state.take_output().services.is_none(), "db has not answered");
    state.on_health("db", &[]);
    let output = state.take_output();
    assert!(state.is_synced());
    // Synced: the services without a VIP yet are added once allocated.
    assert!(matches!(output.services, Some(SourceChange::Replace(ref s)) if s.services.is_empty()), "{output:?}");
    state.on_allocated("web", allocation("241.0.0.10", 9));
    let changes = delta(state.take_output());
    assert!(matches!(&changes[..], [ServiceChange::Upsert(s)] if s.name == "web" && s.backends.len() == 1));
}

#[test]
fn one_changed_service_is_one_change() {
    let mut state = synced();
    state.on_health(
        "web",
        &[instance("web", "web-1", "n1", "10.0.0.1", 80, &[]), instance("web", "web-2", "n3", "10.0.0.3", 80, &[])],
    );
    let changes = delta(state.take_output());
    assert!(matches!(&changes[..], [ServiceChange::Upsert(s)] if s.name == "web" && s.backends.len() == 2));
    // The same answer again changes nothing.
    state.on_health(
        "web",
        &[instance("web", "web-1", "n1", "10.0.0.1", 80, &[]), instance("web", "web-2", "n3", "10.0.0.3", 80, &[])],
    );
    assert!(state.take_output().services.is_none());
}

#[test]
fn a_new_port_moves_the_frontend_and_no_instance_keeps_it_empty() {
    let mut state = synced();
    state.on_health("web", &[instance("web", "web-1", "n1", "10.0.0.1", 8080, &[])]);
    let changes = delta(state.take_output());
    assert!(
        matches!(&changes[..], [ServiceChange::Remove(old), ServiceChange::Upsert(new)] if old.port == 80 && new.frontend.port == 8080),
        "{changes:?}"
    );
    // No passing instance: the service stays, with no backend (connects are refused).
    state.on_health("web", &[]);
    let changes = delta(state.take_output());
    assert!(matches!(&changes[..], [ServiceChange::Upsert(s)] if s.frontend.port == 8080 && s.backends.is_empty()));
}

#[test]
fn a_service_that_leaves_is_removed_and_its_vip_released_after_the_grace_period() {
    let mut state = synced();
    let plan = state.on_catalog(&catalog(&["db"]));
    assert_eq!(plan, WatchPlan { start: vec![], stop: vec!["web".into()], first_index: None });
    let changes = delta(state.take_output());
    assert!(matches!(&changes[..], [ServiceChange::Remove(f)] if f.port == 80));
    let now = Instant::now();
    assert!(state.due_releases(now).is_empty(), "within the grace period");
    let later = now + Duration::from_secs(3601);
    state.on_failure("catalog", Some("connection refused".into()));
    assert!(state.due_releases(later).is_empty(), "never during an outage");
    state.on_failure("catalog", None);
    let due: Vec<String> = state.due_releases(later).into_iter().map(|(name, _)| name).collect();
    assert_eq!(due, ["web"]);
    assert!(state.due_releases(later).is_empty(), "asked for once, not on every tick");
    state.on_released("web");
    assert!(state.due_releases(later + Duration::from_secs(3600)).is_empty());
}

#[test]
fn a_service_that_comes_back_keeps_its_vip() {
    let mut state = synced();
    state.on_catalog(&catalog(&["db"]));
    state.take_output();
    let plan = state.on_catalog(&catalog(&["db", "web"]));
    assert_eq!(plan.start, ["web"]);
    assert!(state.take_allocations().is_empty(), "its VIP is still recorded");
    state.on_health("web", &[instance("web", "web-1", "n1", "10.0.0.1", 80, &[])]);
    let changes = delta(state.take_output());
    assert!(matches!(&changes[..], [ServiceChange::Upsert(s)] if s.frontend.vip.to_string() == "241.0.0.10"));
    assert!(state.due_releases(Instant::now() + Duration::from_secs(7200)).is_empty());
}

#[test]
fn declarations_are_reported_per_service_when_they_change() {
    let mut state = synced();
    state.on_health("web", &[instance("web", "web-1", "n1", "10.0.0.1", 80, &["connect_to=db"])]);
    let output = state.take_output();
    let expected = BTreeMap::from([("web-1".to_owned(), BTreeSet::from(["db".to_owned()]))]);
    assert_eq!(output.declarations, [("web".to_owned(), expected)]);
    state.on_health("web", &[instance("web", "web-1", "n1", "10.0.0.1", 80, &[])]);
    assert_eq!(state.take_output().declarations, [("web".to_owned(), BTreeMap::new())], "gone: an empty set");
    state.on_health("web", &[instance("web", "web-1", "n1", "10.0.0.1", 80, &[])]);
    assert!(state.take_output().declarations.is_empty());
}

#[test]
fn a_vip_record_that_changes_in_kv_moves_the_service() {
    let mut state = synced();
    let record = |vip: &str| {
        use base64::Engine as _;
        KvEntry {
            key: "viking/services/web".into(),
            value: Some(base64::engine::general_purpose::STANDARD.encode(vip)),
            modify_index: 30,
        }
    };
    let db = KvEntry { key: "viking/services/db".into(), ..record("241.0.0.20") };
    state.on_vips(31, &[record("241.0.0.11"), KvEntry { modify_index: 6, ..db }]);
    let changes = delta(state.take_output());
    assert!(
        matches!(&changes[..], [ServiceChange::Remove(old), ServiceChange::Upsert(new)]
            if old.vip.to_string() == "241.0.0.10" && new.frontend.vip.to_string() == "241.0.0.11"),
        "{changes:?}"
    );
}

#[test]
fn loopback_instances_count_on_this_hosts_node_only() {
    let mut state = synced();
    state.on_health(
        "web",
        &[
            instance("web", "here", "this-host", "127.0.0.1", 80, &[]),
            instance("web", "there", "n9", "127.0.0.1", 80, &[]),
        ],
    );
    let changes = delta(state.take_output());
    let ServiceChange::Upsert(web) = &changes[0] else { panic!("{changes:?}") };
    assert_eq!(web.backends.iter().map(|b| b.addr.to_string()).collect::<Vec<_>>(), ["127.0.0.1:80"]);
}

fn snapshot(index: u64, entries: &[HealthEntry]) -> Snapshot {
    let mut services: HashMap<String, Vec<HealthEntry>> = HashMap::new();
    for entry in entries {
        services.entry(entry.service.service.clone()).or_default().push(entry.clone());
    }
    Snapshot { index, services }
}

fn served(output: &Output) -> Vec<(String, usize)> {
    let Some(SourceChange::Replace(state)) = &output.services else { panic!("expected the full state: {output:?}") };
    let mut served: Vec<(String, usize)> =
        state.services.values().map(|s| (s.name.clone(), s.backends.len())).collect();
    served.sort();
    served
}

#[test]
fn a_snapshot_gives_the_first_answers_and_the_watches_start_blocking_at_its_index() {
    let mut state = ConsulState::new(settings());
    state.expect_snapshot();
    let plan = state.on_catalog(&catalog(&["web", "db", "idle"]));
    assert!(plan.start.is_empty(), "watches wait for the snapshot: {plan:?}");
    state.on_vips(3, &[]);
    for request in state.take_allocations() {
        let vip = if request.name == "web" { "241.0.0.10" } else { "241.0.0.20" };
        state.on_allocated(&request.name, allocation(vip, 5));
    }
    assert!(state.take_output().services.is_none(), "not synced before the snapshot");

    let web = instance("web", "web-1", "n1", "10.0.0.1", 80, &[]);
    let plan = state.on_snapshot(Some(snapshot(40, &[web, instance("gone", "g-1", "n1", "10.0.0.9", 80, &[])])));
    assert_eq!(plan.first_index, Some(40));
    assert_eq!(plan.start, ["db", "idle", "web"]);
    let output = state.take_output();
    assert!(state.is_synced(), "every first answer came from the snapshot");
    // `db` and `idle` have no passing instance in it: not served until their watch says
    // otherwise; `gone` is not in the catalog.
    assert_eq!(served(&output), [("web".to_owned(), 1)]);
}

#[test]
fn a_snapshot_read_before_the_catalog_waits_for_it() {
    let mut state = ConsulState::new(settings());
    state.expect_snapshot();
    let plan = state.on_snapshot(Some(snapshot(40, &[instance("web", "web-1", "n1", "10.0.0.1", 80, &[])])));
    assert_eq!(plan, WatchPlan::default());
    let plan = state.on_catalog(&catalog(&["web"]));
    assert_eq!((plan.start.as_slice(), plan.first_index), (&["web".to_owned()][..], Some(40)));
    let later = state.on_catalog(&catalog(&["web", "api"]));
    assert_eq!((later.start.as_slice(), later.first_index), (&["api".to_owned()][..], None), "used once");
}

#[test]
fn without_a_snapshot_every_service_asks_on_its_own() {
    let mut state = ConsulState::new(settings());
    state.expect_snapshot();
    assert!(state.on_catalog(&catalog(&["web", "db"])).start.is_empty());
    let shrunk = state.on_catalog(&catalog(&["web"]));
    assert_eq!(shrunk.stop, ["db"]);
    let plan = state.on_snapshot(None);
    assert_eq!((plan.start.as_slice(), plan.first_index), (&["web".to_owned()][..], None));
    state.on_vips(3, &[]);
    assert!(state.take_output().services.is_none(), "web's own first answer is awaited");
}
