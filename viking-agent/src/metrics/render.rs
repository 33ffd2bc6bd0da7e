//! One scrape: the run loop's inventory joined with the kernel's counters, encoded with
//! `prometheus-client` in the Prometheus text format.

use std::collections::BTreeSet;

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, info::Info},
    registry::Registry,
};

use super::{EndpointContext, Inventory};
use crate::dataplane::tables::{KernelTables, TableError};

/// Labels of a per-service series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceLabels {
    service: String,
    frontend: String,
}

/// Labels of a refusal series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusalLabels {
    service: String,
    frontend: String,
    reason: &'static str,
}

/// Labels of a per-backend series: backends are counted per address, whichever services
/// share it, so the address is the only label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabels {
    backend: String,
}

/// Labels of a map-fill series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MapLabels {
    map: &'static str,
}

/// Renders every series.
pub(super) fn render(
    inventory: &Inventory,
    tables: &KernelTables,
    context: &EndpointContext,
) -> Result<String, TableError> {
    let settings = &context.settings;
    let mut registry = Registry::default();
    context.agent.register(&mut registry, context.consul, context.docker, context.dns);
    registry.register(
        "viking_build",
        "The agent's version",
        Info::new(vec![("version", env!("CARGO_PKG_VERSION").to_owned())]),
    );
    let gauge = |registry: &mut Registry, name: &str, help: &str, value: i64| {
        let gauge = Gauge::<i64>::default();
        gauge.set(value);
        registry.register(name, help, gauge);
    };
    gauge(&mut registry, "viking_ready", "1 once every source has been applied (what /readyz answers)", {
        i64::from(inventory.is_ready())
    });
    gauge(&mut registry, "viking_services", "Services (frontends) the kernel serves", as_i64(inventory.service_count));
    let omitted = inventory.service_count.saturating_sub(inventory.services.len());
    gauge(
        &mut registry,
        "viking_metrics_services_omitted",
        "Services without series of their own (beyond metrics.max_services)",
        as_i64(omitted),
    );

    let entries = Family::<MapLabels, Gauge<i64>>::default();
    let limit = Family::<MapLabels, Gauge<i64>>::default();
    entries.get_or_create(&MapLabels { map: "services" }).set(as_i64(inventory.slots.0));
    limit.get_or_create(&MapLabels { map: "services" }).set(i64::from(inventory.slots.1));
    entries.get_or_create(&MapLabels { map: "backends" }).set(as_i64(inventory.backends.0));
    limit.get_or_create(&MapLabels { map: "backends" }).set(i64::from(inventory.backends.1));
    registry.register("viking_map_entries", "Entries in use in a kernel map", entries);
    registry.register("viking_map_limit", "Entries a kernel map can hold (its max_entries)", limit);

    let redirected = Family::<ServiceLabels, Counter>::default();
    let refused = Family::<RefusalLabels, Counter>::default();
    let mut backend_ids = BTreeSet::new();
    for service in &inventory.services {
        let stats = tables.stats(service.service_id)?;
        let labels = ServiceLabels { service: service.name.clone(), frontend: service.frontend.to_string() };
        redirected.get_or_create(&labels).inc_by(stats.redirected);
        for (reason, count) in [("no_backend", stats.refused_no_backend), ("policy", stats.refused_by_policy)] {
            let labels = RefusalLabels { service: labels.service.clone(), frontend: labels.frontend.clone(), reason };
            refused.get_or_create(&labels).inc_by(count);
        }
        backend_ids.extend(service.backends.iter().copied());
    }
    registry.register("viking_service_redirected", "Connects (and UDP flows) sent to a backend", redirected);
    registry.register("viking_service_refused", "Connects to a VIP refused, by reason", refused);

    if settings.per_backend {
        let connects = Family::<BackendLabels, Counter>::default();
        let open = Family::<BackendLabels, Gauge<i64>>::default();
        let failures = Family::<BackendLabels, Counter>::default();
        let ejections = Family::<BackendLabels, Counter>::default();
        let ejected = Family::<BackendLabels, Gauge<i64>>::default();
        let now = crate::dataplane::monotonic_ns();
        for (id, addr) in &backend_ids {
            let labels = BackendLabels { backend: addr.to_string() };
            let (sent, active) = tables.backend_stats(*id)?;
            let health = tables.backend_health(*id)?;
            connects.get_or_create(&labels).inc_by(sent);
            open.get_or_create(&labels).set(i64::try_from(active).unwrap_or(i64::MAX));
            failures.get_or_create(&labels).inc_by(health.failures_total);
            ejections.get_or_create(&labels).inc_by(health.ejections_total);
            ejected.get_or_create(&labels).set(i64::from(health.is_ejected(now)));
        }
        registry.register("viking_backend_connects", "Connects sent to a backend", connects);
        registry.register(
            "viking_backend_open_connections",
            "Open connections to a backend (counted for least_conn services)",
            open,
        );
        registry.register(
            "viking_backend_connect_failures",
            "TCP connects to a backend refused, reset or unanswered",
            failures,
        );
        registry.register("viking_backend_ejections", "Times a backend was ejected", ejections);
        registry.register("viking_backend_ejected", "1 while a backend is ejected", ejected);
    }

    let mut out = String::new();
    encode(&mut out, &registry).expect("writing to a String cannot fail");
    Ok(out)
}

fn as_i64(value: impl TryInto<i64>) -> i64 {
    value.try_into().unwrap_or(i64::MAX)
}
