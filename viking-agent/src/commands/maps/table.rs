//! The table `maps dump` prints without `--json`, rendered from the same view.

use std::{fmt::Write as _, net::SocketAddr, path::Path};

use super::view::{Dump, DumpedBackend};

/// The dump as `maps dump` prints it without `--json`: services, then container policy
/// and the backstop when there are any.
pub(super) fn render_table(dump: &Dump, pin_dir: &Path) -> String {
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::NOTHING).set_header([
        "NAME",
        "FRONTEND",
        "ALGORITHM",
        "BACKENDS",
        "REDIRECTED",
        "REFUSED",
    ]);
    for s in &dump.services {
        table.add_row([
            s.name.clone(),
            format!("{}/{}", SocketAddr::new(s.vip, s.port), s.protocol),
            s.algorithm.name().into(),
            if s.backends.is_empty() {
                "(none: connects refused)".into()
            } else {
                let shown: Vec<String> = s.backend_stats.iter().map(describe_backend).collect();
                shown.join(" ")
            },
            s.stats.redirected.to_string(),
            (s.stats.refused_no_backend + s.stats.refused_by_policy).to_string(),
        ]);
    }
    let mut text = format!("{table}\n");
    let _ =
        writeln!(text, "{} service(s) pinned at {} (layout {})", dump.services.len(), pin_dir.display(), dump.layout);
    if !dump.policy.is_empty() {
        let mut table = comfy_table::Table::new();
        table.load_preset(comfy_table::presets::NOTHING).set_header(["CGROUP", "MODE", "DECLARED VIPS", "OVERLAYS"]);
        for p in &dump.policy {
            let allowed: Vec<String> = p.allowed.iter().map(ToString::to_string).collect();
            let overlays: Vec<String> =
                p.overlays.iter().map(|o| format!("{}/{} -> {}", o.port, o.protocol, o.frontend)).collect();
            table.add_row([p.cgroup_id.to_string(), p.mode.name().into(), allowed.join(" "), overlays.join(" ")]);
        }
        let _ = writeln!(text, "\n{table}");
    }
    if let Some(scope) = &dump.container_scope {
        let _ = writeln!(
            text,
            "\ncontainers without an entry yet (cgroups below {}): {}; {} VIP connect(s) refused, {} audited",
            scope.parent_cgroup_id,
            scope.mode.name(),
            scope.refused,
            scope.audited
        );
    }
    text
}

/// `ip:port`, with its weight when above 1, its open connections when counted, and its
/// ejection while it lasts.
fn describe_backend(backend: &DumpedBackend) -> String {
    let mut text = backend.address.map_or_else(|| "(missing)".to_owned(), |address| address.to_string());
    if backend.weight > 1 {
        text.push_str(&format!(" x{}", backend.weight));
    }
    if backend.active > 0 {
        text.push_str(&format!(" ({} open)", backend.active));
    }
    if let Some(ms) = backend.ejected_for_ms {
        text.push_str(&format!(" (ejected for {:.1} s, {} failures)", ms as f64 / 1000.0, backend.failures));
    }
    text
}
