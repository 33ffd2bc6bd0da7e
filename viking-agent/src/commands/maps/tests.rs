//! The dump's two renderings, JSON and table, of one view.

use std::{net::IpAddr, path::Path};

use serde_json::json;
use viking_common::{Algorithm, PolicyMode};

use super::{table::render_table, view::*};
use crate::model::{Frontend, OutlierDetection, Protocol};

fn backend(address: Option<&str>, weight: u16, active: u64) -> DumpedBackend {
    DumpedBackend {
        address: address.map(|a| a.parse().unwrap()),
        weight,
        connects: 9,
        active,
        ejected_for_ms: None,
        consecutive_failures: 0,
        failures: 0,
        ejections: 0,
        skipped: 0,
    }
}

fn service(name: &str, vip: &str, protocol: KeyProtocol, backend_stats: Vec<DumpedBackend>) -> DumpedService {
    DumpedService {
        name: name.into(),
        vip: vip.parse().unwrap(),
        port: 80,
        protocol,
        algorithm: Algorithm::LeastConn,
        service_id: 7,
        affinity_seconds: 0,
        backends: backend_stats.iter().map(|b| b.address).collect(),
        slots: backend_stats.iter().map(|b| usize::from(b.weight)).sum(),
        backend_stats,
        outlier: OutlierDetection::default().into(),
        stats: DumpedStats { redirected: 5, refused_no_backend: 1, refused_by_policy: 2 },
    }
}

fn dump() -> Dump {
    let vip: IpAddr = "240.0.0.10".parse().unwrap();
    Dump {
        layout: 2,
        services: vec![
            service(
                "web",
                "240.0.0.10",
                KeyProtocol::Served(Protocol::Tcp),
                vec![backend(Some("127.0.0.1:8080"), 2, 3), backend(None, 1, 0)],
            ),
            service("sctp", "fd00::10", KeyProtocol::Other(132), Vec::new()),
        ],
        policy: vec![DumpedPolicy {
            cgroup_id: 42,
            mode: PolicyMode::Enforce,
            allowed: vec![vip],
            overlays: vec![DumpedOverlay {
                port: 8080,
                protocol: Protocol::Tcp,
                frontend: Frontend { vip, port: 80, protocol: Protocol::Tcp },
            }],
        }],
        container_scope: Some(DumpedScope {
            parent_cgroup_id: 9,
            parent_level: 2,
            mode: PolicyMode::Audit,
            refused: 0,
            audited: 4,
        }),
    }
}

#[test]
fn json_keeps_names_and_numbers_as_they_are() {
    let json = serde_json::to_value(dump()).unwrap();
    let web = &json["services"][0];
    assert_eq!(web["vip"], "240.0.0.10");
    assert_eq!(web["port"], 80);
    assert_eq!(web["protocol"], "tcp");
    assert_eq!(web["algorithm"], "least_conn");
    assert_eq!(web["backends"], json!(["127.0.0.1:8080", null]));
    assert_eq!(web["backend_stats"][0]["address"], "127.0.0.1:8080");
    assert_eq!(web["backend_stats"][0]["weight"], 2);
    assert_eq!(web["slots"], 3);
    assert_eq!(web["stats"]["refused_by_policy"], 2);
    assert_eq!(json["services"][1]["vip"], "fd00::10");
    assert_eq!(json["services"][1]["protocol"], 132);
    assert_eq!(
        json["policy"],
        json!([{
            "cgroup_id": 42,
            "mode": "enforce",
            "allowed": ["240.0.0.10"],
            "overlays": [{ "port": 8080, "protocol": "tcp", "frontend": "240.0.0.10:80/tcp" }],
        }])
    );
    assert_eq!(json["container_scope"]["mode"], "audit");
}

#[test]
fn table_shows_the_same_view() {
    let table = render_table(&dump(), Path::new("/sys/fs/bpf/viking"));
    // Columns are padded to their widest cell; compare the cells.
    let rows: Vec<String> = table.lines().map(|line| line.split_whitespace().collect::<Vec<_>>().join(" ")).collect();
    let expected = [
        "NAME FRONTEND ALGORITHM BACKENDS REDIRECTED REFUSED",
        "web 240.0.0.10:80/tcp least_conn 127.0.0.1:8080 x2 (3 open) (missing) 5 3",
        "sctp [fd00::10]:80/132 least_conn (none: connects refused) 5 3",
        "2 service(s) pinned at /sys/fs/bpf/viking (layout 2)",
        "",
        "CGROUP MODE DECLARED VIPS OVERLAYS",
        "42 enforce 240.0.0.10 8080/tcp -> 240.0.0.10:80/tcp",
        "",
        "containers without an entry yet (cgroups below 9): audit; 0 VIP connect(s) refused, 4 audited",
    ];
    assert_eq!(rows, expected, "{table}");
}
