//! Writing agent config files for tests.

use std::{fmt::Write as _, net::SocketAddr, path::Path};

/// One `[[service]]` of a test config.
#[derive(Clone, Debug)]
pub struct ServiceSpec {
    /// Service name.
    pub name: String,
    /// VIP (inside 240.0.0.0/4).
    pub vip: String,
    /// Virtual port.
    pub port: u16,
    /// `tcp` or `udp`.
    pub protocol: &'static str,
    /// `round_robin` or `random`.
    pub algorithm: &'static str,
    /// Backend addresses.
    pub backends: Vec<SocketAddr>,
}

impl ServiceSpec {
    /// A TCP round-robin service.
    pub fn tcp(name: &str, vip: &str, port: u16, backends: &[SocketAddr]) -> Self {
        Self {
            name: name.into(),
            vip: vip.into(),
            port,
            protocol: "tcp",
            algorithm: "round_robin",
            backends: backends.to_vec(),
        }
    }

    /// The VIP frontend as a socket address.
    pub fn frontend(&self) -> SocketAddr {
        SocketAddr::new(self.vip.parse().expect("valid VIP"), self.port)
    }
}

/// Renders a config file with these services.
pub fn render(services: &[ServiceSpec]) -> String {
    let mut text = String::new();
    for s in services {
        let backends: Vec<String> = s.backends.iter().map(|b| format!("{:?}", b.to_string())).collect();
        let _ = write!(
            text,
            "[[service]]\nname = {:?}\nvip = {:?}\nport = {}\nprotocol = {:?}\nalgorithm = {:?}\nbackends = [{}]\n\n",
            s.name,
            s.vip,
            s.port,
            s.protocol,
            s.algorithm,
            backends.join(", ")
        );
    }
    text
}

/// Writes a config file atomically (write + rename), as editors and config tools do.
pub fn write(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write config");
    std::fs::rename(&tmp, path).expect("rename config");
}
