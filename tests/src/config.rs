//! Writing agent config files for tests.

use std::{fmt::Write as _, net::SocketAddr, path::Path};

/// The IPv6 VIP range the tests use (a ULA prefix; nothing routes it in a test netns).
pub const VIP_RANGE_V6: &str = "fd00:7669:6b69::/48";

/// One `[[service]]` of a test config.
#[derive(Clone, Debug)]
pub struct ServiceSpec {
    /// Service name.
    pub name: String,
    /// VIP (inside 240.0.0.0/4 or [`VIP_RANGE_V6`]).
    pub vip: String,
    /// Virtual port.
    pub port: u16,
    /// `tcp` or `udp`.
    pub protocol: &'static str,
    /// `round_robin`, `random`, `weighted` or `least_conn`.
    pub algorithm: &'static str,
    /// Client affinity window; 0 = off.
    pub affinity_seconds: u32,
    /// The `outlier` table as TOML (e.g. `{ ejection_seconds = 1 }`); `None`: defaults.
    pub outlier: Option<String>,
    /// Backend addresses with their weights.
    pub backends: Vec<(SocketAddr, u16)>,
}

impl ServiceSpec {
    /// A TCP round-robin service with weight-1 backends.
    pub fn tcp(name: &str, vip: &str, port: u16, backends: &[SocketAddr]) -> Self {
        Self {
            name: name.into(),
            vip: vip.into(),
            port,
            protocol: "tcp",
            algorithm: "round_robin",
            affinity_seconds: 0,
            outlier: None,
            backends: backends.iter().map(|b| (*b, 1)).collect(),
        }
    }

    /// The same service over UDP.
    pub fn udp(name: &str, vip: &str, port: u16, backends: &[SocketAddr]) -> Self {
        Self { protocol: "udp", ..Self::tcp(name, vip, port, backends) }
    }

    /// The VIP frontend as a socket address.
    pub fn frontend(&self) -> SocketAddr {
        SocketAddr::new(self.vip.parse().expect("valid VIP"), self.port)
    }
}

/// Renders a config file with these services (and the IPv6 test VIP range next to the
/// default IPv4 one). The metrics endpoint gets a port of its own (tests run agents in
/// parallel); [`crate::Agent::metrics_addr`] finds it.
pub fn render(services: &[ServiceSpec]) -> String {
    let mut text =
        format!("[agent]\nvip_ranges = [\"240.0.0.0/4\", {VIP_RANGE_V6:?}]\n\n[metrics]\nlisten = \"127.0.0.1:0\"\n\n");
    for s in services {
        let backends: Vec<String> = s
            .backends
            .iter()
            .map(|(addr, weight)| format!("{{ address = {:?}, weight = {weight} }}", addr.to_string()))
            .collect();
        let _ = write!(
            text,
            "[[service]]\nname = {:?}\nvip = {:?}\nport = {}\nprotocol = {:?}\nalgorithm = {:?}\naffinity_seconds = {}\nbackends = [{}]\n\n",
            s.name,
            s.vip,
            s.port,
            s.protocol,
            s.algorithm,
            s.affinity_seconds,
            backends.join(", ")
        );
        if let Some(outlier) = &s.outlier {
            // Keys after `backends` still belong to the same [[service]] table.
            let _ = writeln!(text, "outlier = {outlier}\n");
        }
    }
    text
}

/// Writes a config file atomically (write + rename), as editors and config tools do.
pub fn write(path: &Path, text: &str) {
    viking_sandbox::agent::write_config(path, text).unwrap_or_else(|err| panic!("{err}"));
}
