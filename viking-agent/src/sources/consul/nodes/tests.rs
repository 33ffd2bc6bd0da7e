//! The node view driven by hand-made node answers: which services each answer changes,
//! and which instances pass.

use super::*;

fn instance(service: &str, id: &str, tags: &[&str]) -> ServiceInstance {
    ServiceInstance {
        id: id.into(),
        service: service.into(),
        address: "".into(),
        port: 80,
        meta: None,
        tags: Some(tags.iter().map(|t| (*t).into()).collect()),
        weights: None,
    }
}

fn answer(node: &str, address: &str, instances: &[ServiceInstance]) -> Option<NodeServices> {
    Some(NodeServices { node: Node { node: node.into(), address: address.into() }, services: instances.to_vec() })
}

/// A check of instance `service_id` (named `<service>-<n>` in these tests; empty for the
/// node's own check).
fn check(service_id: &str, status: &str) -> NodeCheck {
    let service = service_id.split('-').next().unwrap_or_default();
    NodeCheck { service_id: service_id.into(), service_name: service.into(), status: status.into() }
}

fn names(set: &BTreeSet<Arc<str>>) -> Vec<&str> {
    set.iter().map(|name| &**name).collect()
}

fn passing_ids(view: &NodeView, service: &str) -> Vec<String> {
    let mut ids: Vec<String> = view.passing(service).into_iter().map(|e| e.service.id.into()).collect();
    ids.sort();
    ids
}

/// A view with node `n1` (web-1, db-1) read in full, every check passing.
fn read_node() -> NodeView {
    let mut view = NodeView::default();
    view.add("n1").expect("new node");
    let read = view
        .set_services("n1", answer("n1", "10.0.0.1", &[instance("web", "web-1", &[]), instance("db", "db-1", &[])]));
    assert_eq!(names(&read.changed), ["db", "web"]);
    assert!(read.restart_checks.is_some(), "the first answer starts the checks watch");
    assert!(!view.is_read("n1"), "its checks have not answered");
    let changed = view.set_checks("n1", &[check("web-1", "passing")]);
    assert_eq!(names(&changed), ["db", "web"], "confirmed by the checks answer");
    assert!(view.is_read("n1"));
    view
}

#[test]
fn an_instance_passes_only_once_a_checks_answer_read_after_it_came_in() {
    let mut view = NodeView::default();
    view.add("n1");
    view.set_services("n1", answer("n1", "10.0.0.1", &[instance("web", "web-1", &[])]));
    assert!(view.hosts("web"));
    assert!(view.passing("web").is_empty(), "unconfirmed before any checks answer");
    view.set_checks("n1", &[]);
    assert_eq!(passing_ids(&view, "web"), ["web-1"], "no check at all: passing, as ?passing says");
}

#[test]
fn a_new_instance_restarts_the_checks_watch_and_waits_for_it() {
    let mut view = read_node();
    let read = view.set_services(
        "n1",
        answer(
            "n1",
            "10.0.0.1",
            &[instance("web", "web-1", &[]), instance("web", "web-2", &[]), instance("db", "db-1", &[])],
        ),
    );
    assert_eq!(names(&read.changed), ["web"], "db did not change");
    let generation = read.restart_checks.expect("a new instance restarts the checks watch");
    assert!(view.is_current("n1", NodeWatch::Checks, generation));
    assert!(!view.is_current("n1", NodeWatch::Checks, generation - 1), "the old watch is stale");
    assert_eq!(passing_ids(&view, "web"), ["web-1"], "web-2 waits for its checks");
    assert!(!view.is_read("n1"));
    // The restarted watch's first answer: web-2's check is still critical.
    let changed = view.set_checks("n1", &[check("web-1", "passing"), check("web-2", "critical")]);
    assert_eq!(names(&changed), ["web"]);
    assert_eq!(passing_ids(&view, "web"), ["web-1"]);
    view.set_checks("n1", &[check("web-1", "passing"), check("web-2", "passing")]);
    assert_eq!(passing_ids(&view, "web"), ["web-1", "web-2"]);
}

#[test]
fn a_changed_or_removed_instance_needs_no_new_checks_answer() {
    let mut view = read_node();
    let mut moved = instance("web", "web-1", &[]);
    moved.port = 8080;
    let read = view.set_services("n1", answer("n1", "10.0.0.1", &[moved]));
    assert_eq!(names(&read.changed), ["db", "web"], "db left the node, web-1 changed");
    assert_eq!(read.restart_checks, None);
    assert_eq!(view.passing("web")[0].service.port, 8080);
    assert!(!view.hosts("db"), "db has no instance left anywhere");
}

#[test]
fn a_failing_check_takes_its_instance_out_and_a_node_check_the_whole_node() {
    let mut view = read_node();
    let changed = view.set_checks("n1", &[check("web-1", "warning")]);
    assert_eq!(names(&changed), ["web"]);
    assert!(view.passing("web").is_empty(), "warning is not passing");
    assert_eq!(passing_ids(&view, "db"), ["db-1"]);
    let changed = view.set_checks("n1", &[check("", "critical"), check("web-1", "passing")]);
    assert_eq!(names(&changed), ["db", "web"], "a node check holds every instance");
    assert!(view.passing("db").is_empty() && view.passing("web").is_empty());
    assert!(view.hosts("web"), "still registered");
}

#[test]
fn a_new_node_address_changes_every_service_on_it() {
    let mut view = read_node();
    let read = view
        .set_services("n1", answer("n1", "10.0.0.9", &[instance("web", "web-1", &[]), instance("db", "db-1", &[])]));
    assert_eq!(names(&read.changed), ["db", "web"]);
    assert_eq!(view.passing("web")[0].node.address, "10.0.0.9");
}

#[test]
fn services_spread_over_nodes_are_merged_and_a_removed_node_takes_its_instances() {
    let mut view = read_node();
    view.add("n2");
    view.set_services("n2", answer("n2", "10.0.0.2", &[instance("web", "web-3", &["blue"])]));
    view.set_checks("n2", &[]);
    assert_eq!(passing_ids(&view, "web"), ["web-1", "web-3"]);
    assert!(view.has_tag("web", "blue") && !view.has_tag("db", "blue"));
    assert_eq!(names(&view.remove("n2")), ["web"]);
    assert_eq!(passing_ids(&view, "web"), ["web-1"]);
    assert!(!view.has_tag("web", "blue"));
    assert_eq!(view.add("n1"), None, "known already");
}

#[test]
fn a_node_that_no_longer_exists_hosts_nothing() {
    let mut view = read_node();
    let read = view.set_services("n1", None);
    assert_eq!(names(&read.changed), ["db", "web"]);
    assert!(!view.hosts("web") && !view.hosts("db"));
}
