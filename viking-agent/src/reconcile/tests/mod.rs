//! The reconciler against an in-memory model of the maps that checks, after every single
//! write, what a concurrent `connect()` could observe.

mod model;

use std::{collections::BTreeMap, net::SocketAddr, sync::Arc};

use viking_common::Algorithm;

use self::model::ModelKernel;
use super::*;
use crate::{dataplane::tables::KernelSnapshot, model::Protocol};

fn service(name: &str, vip: &str, port: u16, backends: &[&str]) -> Service {
    Service {
        name: name.into(),
        frontend: Frontend { vip: vip.parse().unwrap(), port, protocol: Protocol::Tcp },
        algorithm: Algorithm::RoundRobin,
        affinity_secs: 0,
        outlier: crate::model::OutlierDetection::default(),
        backends: backends.iter().map(|b| crate::model::BackendSpec::new(b.parse().unwrap())).collect(),
    }
}

fn state(services: &[Service]) -> DesiredState {
    let mut state = DesiredState::default();
    for service in services {
        state.insert(service.clone());
    }
    state
}

fn expected(desired: &DesiredState) -> BTreeMap<Frontend, Vec<SocketAddr>> {
    desired.services.values().map(|s| (s.frontend, slots::layout(s, 1024))).collect()
}

fn reconciler(limits: Limits) -> Reconciler<ModelKernel> {
    Reconciler::adopt(ModelKernel::default(), KernelSnapshot::default(), limits).unwrap()
}

#[test]
fn applies_services_and_backends() {
    let mut r = reconciler(Limits::default());
    let desired = state(&[
        service("web", "240.0.0.10", 80, &["127.0.0.1:9001", "127.0.0.1:9002"]),
        service("db", "240.0.0.11", 5432, &["127.0.0.1:9001"]),
    ]);
    let report = r.apply(&desired);
    assert_eq!(report.added.len(), 2, "{report:?}");
    assert_eq!(r.kernel().served(), expected(&desired));
    assert_eq!(r.kernel().backends.len(), 2, "a backend shared by two services is stored once");
}

#[test]
fn applying_the_same_state_twice_writes_nothing() {
    let mut r = reconciler(Limits::default());
    let desired = state(&[service("web", "240.0.0.10", 80, &["127.0.0.1:9001", "127.0.0.1:9002"])]);
    r.apply(&desired);
    let before = r.kernel().writes;
    let report = r.apply(&desired);
    assert!(report.is_noop(), "{report:?}");
    assert_eq!(r.kernel().writes, before);
}

#[test]
fn removing_one_backend_writes_only_the_difference() {
    let mut r = reconciler(Limits::default());
    r.apply(&state(&[service("web", "240.0.0.10", 80, &["127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003"])]));
    let before = r.kernel().writes;
    let desired = state(&[service("web", "240.0.0.10", 80, &["127.0.0.1:9001", "127.0.0.1:9003"])]);
    let report = r.apply(&desired);
    assert_eq!(report.changed.len(), 1);
    assert_eq!(r.kernel().served(), expected(&desired));
    // slot 2 rewritten, slot 0 count lowered, slot 3 deleted, backend 9002 cleared.
    assert_eq!(r.kernel().writes - before, 4);
}

#[test]
fn removed_services_disappear_with_their_backends() {
    let mut r = reconciler(Limits::default());
    r.apply(&state(&[
        service("web", "240.0.0.10", 80, &["127.0.0.1:9001"]),
        service("db", "240.0.0.11", 5432, &["127.0.0.1:9002"]),
    ]));
    let desired = state(&[service("db", "240.0.0.11", 5432, &["127.0.0.1:9002"])]);
    let report = r.apply(&desired);
    assert_eq!(report.removed, [("web".to_owned(), service("web", "240.0.0.10", 80, &[]).frontend)]);
    assert_eq!(r.kernel().served(), expected(&desired));
    assert_eq!(r.kernel().backends.len(), 1);
    assert!(r.kernel().slots.keys().all(|k| k.port() == 5432));
}

#[test]
fn a_service_without_backends_is_published_with_count_zero() {
    let mut r = reconciler(Limits::default());
    r.apply(&state(&[service("web", "240.0.0.10", 80, &[])]));
    let entry = r.kernel().slots.values().next().copied().unwrap();
    assert_eq!(entry.count, 0);
}

#[test]
fn every_intermediate_state_is_valid_for_readers() {
    // Deterministic pseudo-random walk over backend lists; ModelKernel asserts the reader
    // view after every write.
    let pool: Vec<String> = (0..8).map(|i| format!("127.0.0.1:{}", 9000 + i)).collect();
    let mut r = reconciler(Limits::default());
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..300 {
        let mut services = Vec::new();
        for (i, vip) in ["240.0.0.1", "240.0.0.2", "240.0.0.3"].iter().enumerate() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            if seed.is_multiple_of(5) {
                continue;
            }
            let backends: Vec<&str> =
                pool.iter().enumerate().filter(|(j, _)| (seed >> j) & 1 == 1).map(|(_, b)| b.as_str()).collect();
            services.push(service(&format!("s{i}"), vip, 80, &backends));
        }
        let desired = state(&services);
        let report = r.apply(&desired);
        assert!(report.failed.is_empty(), "{report:?}");
        assert_eq!(r.kernel().served(), expected(&desired));
        let used: std::collections::HashSet<u32> =
            r.kernel().slots.iter().filter(|(k, _)| k.slot > 0).map(|(_, v)| v.backend_id).collect();
        assert_eq!(used.len(), r.kernel().backends.len(), "no backend entry outlives its last slot");
    }
}

#[test]
fn a_full_limit_fails_that_service_only_and_names_the_limit() {
    let limits = Limits { max_services: 1, ..Limits::default() };
    let mut r = reconciler(limits);
    let report = r.apply(&state(&[
        service("a", "240.0.0.1", 80, &["127.0.0.1:9001"]),
        service("b", "240.0.0.2", 80, &["127.0.0.1:9002"]),
    ]));
    assert_eq!(report.added.len(), 1);
    assert_eq!(report.failed.len(), 1);
    assert_eq!(report.failed[0].limit(), Some(&LimitHit::Services(1)), "{}", report.failed[0]);
    assert!(report.failed[0].to_string().contains("limits.max_services = 1"), "the message names the limit");
    assert_eq!(r.kernel().backends.len(), 1, "the failed service left no backend behind");
}

#[test]
fn slot_limit_is_checked_before_writing() {
    let limits = Limits { max_service_slots: 3, ..Limits::default() };
    let mut r = reconciler(limits);
    let report =
        r.apply(&state(&[service("a", "240.0.0.1", 80, &["127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003"])]));
    assert!(matches!(report.failed[0].limit(), Some(LimitHit::ServiceSlots { limit: 3, .. })), "{report:?}");
    assert!(r.kernel().slots.is_empty());
}

#[test]
fn an_adopting_reconciler_keeps_the_kernel_state_and_ids() {
    let desired = state(&[
        service("web", "240.0.0.10", 80, &["127.0.0.1:9001", "127.0.0.1:9002"]),
        service("db", "240.0.0.11", 5432, &["127.0.0.1:9003"]),
    ]);
    let mut first = reconciler(Limits::default());
    first.apply(&desired);
    let kernel = first.kernel;
    let snapshot = kernel.snapshot();
    let slots_before = kernel.slots.clone();

    let mut second = Reconciler::adopt(kernel, snapshot, Limits::default()).unwrap();
    let writes = second.kernel().writes;
    let report = second.apply(&desired);
    assert!(report.is_noop(), "{report:?}");
    assert_eq!(second.kernel().writes, writes, "nothing rewritten after a restart");
    assert_eq!(second.kernel().slots, slots_before);

    // And the adopted state is editable: ids are known, so a new service gets a fresh id.
    let mut more = desired.clone();
    let extra = service("api", "240.0.0.12", 80, &["127.0.0.1:9002"]);
    more.insert(extra);
    second.apply(&more);
    let ids: std::collections::HashSet<u32> =
        second.kernel().slots.iter().filter(|(k, _)| k.slot == 0).map(|(_, v)| v.service_id).collect();
    assert_eq!(ids.len(), 3);
}

#[test]
fn replacing_a_backend_in_a_first_slot_republishes_the_entry_copy() {
    let mut r = reconciler(Limits::default());
    r.apply(&state(&[service("web", "240.0.0.10", 80, &["127.0.0.1:9001", "127.0.0.1:9002"])]));
    // Same count, same algorithm: only the copy in slot 0 tells the kernel about 9003.
    let desired = state(&[service("web", "240.0.0.10", 80, &["127.0.0.1:9001", "127.0.0.1:9003"])]);
    r.apply(&desired);
    assert_eq!(r.kernel().served(), expected(&desired));
}

#[test]
fn adoption_repairs_an_entry_copy_left_stale_by_an_interrupted_agent() {
    let desired = state(&[service("web", "240.0.0.10", 80, &["127.0.0.1:9001", "127.0.0.1:9002"])]);
    let mut first = reconciler(Limits::default());
    first.apply(&desired);
    let mut kernel = first.kernel;
    // The agent died after rewriting slot 2, before publishing slot 0: the copy still
    // names the backend of slot 1 twice.
    let key = service_key(desired.services.keys().next().unwrap(), 0);
    let entry = kernel.slots.get_mut(&key).unwrap();
    entry.first_backends[1] = entry.first_backends[0];
    let snapshot = kernel.snapshot();

    let second = Reconciler::adopt(kernel, snapshot, Limits::default()).unwrap();
    assert_eq!(second.kernel().served(), expected(&desired));
}

#[test]
fn weighted_services_hold_one_slot_per_unit_of_weight() {
    let mut r = reconciler(Limits::default());
    let mut web = service("web", "240.0.0.10", 80, &["127.0.0.1:9001", "127.0.0.1:9002"]);
    web.algorithm = Algorithm::Weighted;
    web.backends[0].weight = 3;
    let desired = state(std::slice::from_ref(&web));
    r.apply(&desired);
    assert_eq!(r.kernel().served()[&web.frontend].len(), 4);
    assert_eq!(r.kernel().backends.len(), 2, "a backend with several slots is stored once");
    assert_eq!(r.installed_state().services[&web.frontend].backends, web.backends, "weights read back");

    // Lowering the weight frees the extra slots and keeps the backends.
    web.backends[0].weight = 1;
    r.apply(&state(std::slice::from_ref(&web)));
    assert_eq!(r.kernel().served()[&web.frontend].len(), 2);
    assert_eq!(r.kernel().backends.len(), 2);
}

#[test]
fn a_write_failure_leaves_the_old_version_and_no_dangling_backend() {
    let mut r = reconciler(Limits::default());
    let before = state(&[service("web", "240.0.0.10", 80, &["127.0.0.1:9001", "127.0.0.1:9002"])]);
    r.apply(&before);
    // Room for one more key only: growing to four backends fails half-way.
    r.kernel.room = Some(1);
    let grown = state(&[service(
        "web",
        "240.0.0.10",
        80,
        &["127.0.0.1:9003", "127.0.0.1:9002", "127.0.0.1:9004", "127.0.0.1:9005"],
    )]);
    let report = r.apply(&grown);
    assert_eq!(report.failed.len(), 1, "{report:?}");
    assert_eq!(r.kernel().served(), expected(&before), "the kernel still serves the old version");
    let used: std::collections::HashSet<u32> =
        r.kernel().slots.iter().filter(|(k, _)| k.slot > 0).map(|(_, v)| v.backend_id).collect();
    assert_eq!(used.len(), r.kernel().backends.len(), "no backend entry without a slot, none missing");

    // Once there is room, the same change applies.
    r.kernel.room = None;
    let report = r.apply(&grown);
    assert!(report.failed.is_empty(), "{report:?}");
    assert_eq!(r.kernel().served(), expected(&grown));
    let used: std::collections::HashSet<u32> =
        r.kernel().slots.iter().filter(|(k, _)| k.slot > 0).map(|(_, v)| v.backend_id).collect();
    assert_eq!(used.len(), r.kernel().backends.len());
}

#[test]
fn a_new_service_that_does_not_fit_leaves_no_trace() {
    let mut r = reconciler(Limits::default());
    r.kernel.room = Some(2);
    let report =
        r.apply(&state(&[service("web", "240.0.0.10", 80, &["127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003"])]));
    assert_eq!(report.failed.len(), 1, "{report:?}");
    assert!(r.kernel().slots.is_empty(), "{:?}", r.kernel().slots);
    assert!(r.kernel().backends.is_empty());
    assert_eq!(r.service_count(), 0);
}

#[test]
fn moving_a_frontend_to_another_port_releases_no_backend() {
    let mut r = reconciler(Limits::default());
    r.apply(&state(&[service("dns", "240.0.0.53", 53, &["127.0.0.1:9001"])]));
    let report = r.apply(&state(&[service("dns", "240.0.0.53", 5353, &["127.0.0.1:9001"])]));
    assert!(report.released_backends.is_empty(), "its UDP sockets must not be destroyed: {report:?}");
}

#[test]
fn a_change_among_thousands_writes_that_service_only() {
    let mut r = reconciler(Limits::default());
    let services: Vec<Service> = (0..2_000u32)
        .map(|i| service(&format!("s{i}"), &format!("240.0.{}.{}", i / 250, 1 + i % 250), 80, &["10.0.0.1:80"]))
        .collect();
    r.apply(&state(&services));
    let before = r.kernel().writes;
    let mut grown = services[1_234].clone();
    grown.backends.push(crate::model::BackendSpec::new("10.0.0.2:80".parse().unwrap()));
    let report = r.apply_changes(vec![
        ServiceChange::Upsert(Arc::new(grown.clone())),
        ServiceChange::Remove(services[7].frontend),
    ]);
    assert_eq!(report.changed.len(), 1, "{report:?}");
    assert_eq!(report.removed, [("s7".to_owned(), services[7].frontend)]);
    // The new backend, its slot and the entry; the removed service's entry and slot (its
    // backend is shared with the others and stays).
    assert_eq!(r.kernel().writes - before, 5, "{report:?}");
    assert_eq!(r.kernel().served()[&grown.frontend].len(), 2);
    assert_eq!(r.served().len(), 1_999);
    assert_eq!(r.served().get(&grown.frontend).map(|s| s.backends.len()), Some(2));
}

#[test]
fn outlier_settings_are_written_with_the_service_and_alone_when_only_they_change() {
    let mut r = reconciler(Limits::default());
    let web = service("web", "240.0.0.10", 80, &["127.0.0.1:9001"]);
    r.apply(&state(std::slice::from_ref(&web)));
    let id = r.kernel().slots.values().find(|v| v.count == 1).unwrap().service_id;
    assert_eq!(r.kernel().outlier[&id], web.outlier.policy(), "written with a new service");

    let slots_before = r.kernel().slots.clone();
    let stricter =
        Service { outlier: crate::model::OutlierDetection { consecutive_failures: 1, ..web.outlier }, ..web.clone() };
    let report = r.apply(&state(std::slice::from_ref(&stricter)));
    assert_eq!(report.writes, 1, "only the policy: {report:?}");
    assert_eq!(r.kernel().slots, slots_before, "no slot rewritten");
    assert_eq!(r.kernel().outlier[&id].consecutive_failures, 1);

    // An agent started on maps whose policy is missing (an older agent's) writes it.
    let mut kernel = r.kernel;
    kernel.outlier.clear();
    let snapshot = kernel.snapshot();
    let mut adopted = Reconciler::adopt(kernel, snapshot, Limits::default()).unwrap();
    adopted.apply(&state(std::slice::from_ref(&stricter)));
    assert_eq!(adopted.kernel().outlier[&id], stricter.outlier.policy());
}
