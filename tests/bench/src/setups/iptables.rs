//! iptables DNAT, laid out the way kube-proxy's iptables mode does it: one rule per service
//! in a services chain (matched in order), jumping to a per-service chain that picks a
//! backend with `-m statistic` and DNATs to it. Everything lives in a network namespace of
//! its own, created per sweep point: the host's tables are never touched, the rules vanish
//! with the namespace, and conntrack (which NAT turns on) stays out of the namespace the
//! other setups run in.

use std::{
    fmt::Write as _,
    fs::File,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};

use crate::{
    protocol::{BACKENDS, VIP_PORT, vip},
    world::Namespace,
};

/// Name of the namespace holding the rules.
const NETNS: &str = "viking-bench-iptables";

/// A namespace with backends, a route for the VIP range and the DNAT rules of N services.
#[derive(Debug)]
pub struct Iptables {
    namespace: Namespace,
    /// How long `iptables-restore` took to install the rules.
    pub install: Duration,
}

impl Iptables {
    /// Builds the namespace and installs the rules for services `0..count` in one
    /// `iptables-restore` batch, which must finish within `limit`.
    pub fn create(count: u32, server_workers: usize, work_dir: &Path, limit: Duration) -> anyhow::Result<Self> {
        let namespace = Namespace::create(NETNS, server_workers)?;
        // Without a route a connect to a VIP fails before any packet reaches the nat
        // table; the route keeps VIP traffic on this namespace's loopback.
        run(Command::new("ip").args(["-n", NETNS, "route", "add", "240.0.0.0/4", "dev", "lo", "src", "127.0.0.1"]))?;
        let rules_path = work_dir.join("iptables-rules");
        std::fs::write(&rules_path, rules(count)).with_context(|| format!("writing {}", rules_path.display()))?;
        let start = Instant::now();
        let mut child = namespace
            .exec("iptables-restore")
            .stdin(File::open(&rules_path)?)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting iptables-restore")?;
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if start.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                bail!("iptables-restore of {count} services did not finish within {} s", limit.as_secs());
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let install = start.elapsed();
        if !status.success() {
            let mut stderr = String::new();
            if let Some(mut err) = child.stderr.take() {
                std::io::Read::read_to_string(&mut err, &mut stderr)?;
            }
            bail!("iptables-restore failed ({status}): {}", stderr.trim());
        }
        Ok(Self { namespace, install })
    }

    /// The namespace the load generator runs in for this setup.
    pub fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    /// Conntrack entries in the namespace and the table's limit.
    pub fn conntrack(&self) -> anyhow::Result<(u64, u64)> {
        let count = self.namespace.sysctl("net/netfilter/nf_conntrack_count")?.parse()?;
        let max = self.namespace.sysctl("net/netfilter/nf_conntrack_max")?.parse()?;
        Ok((count, max))
    }
}

/// The `iptables-restore` input for services `0..count`.
fn rules(count: u32) -> String {
    let mut text = String::from("*nat\n:OUTPUT ACCEPT [0:0]\n:VB-SERVICES - [0:0]\n");
    for i in 0..count {
        let _ = writeln!(text, ":VB-SVC-{i} - [0:0]");
    }
    text.push_str("-A OUTPUT -j VB-SERVICES\n");
    for i in 0..count {
        let _ = writeln!(text, "-A VB-SERVICES -d {}/32 -p tcp -m tcp --dport {VIP_PORT} -j VB-SVC-{i}", vip(i));
    }
    for i in 0..count {
        for (k, backend) in BACKENDS.iter().enumerate() {
            let left = BACKENDS.len() - k;
            // Backend k of n is taken with probability 1/(n-k) among the remaining ones:
            // uniform overall, as kube-proxy writes it.
            let pick = if left > 1 {
                format!("-m statistic --mode random --probability {:.5} ", 1.0 / left as f64)
            } else {
                String::new()
            };
            let _ = writeln!(text, "-A VB-SVC-{i} -p tcp {pick}-j DNAT --to-destination {backend}");
        }
    }
    text.push_str("COMMIT\n");
    text
}

fn run(command: &mut Command) -> anyhow::Result<()> {
    let output = command.output().with_context(|| format!("starting {command:?}"))?;
    ensure!(output.status.success(), "{command:?} failed: {}", String::from_utf8_lossy(&output.stderr).trim());
    Ok(())
}

/// `iptables -V`, for the report.
pub fn version() -> String {
    Command::new("iptables")
        .arg("-V")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|err| format!("iptables -V failed: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_service_is_a_jump_and_a_statistic_split() {
        let text = rules(1);
        assert!(text.contains("-A VB-SERVICES -d 240.0.0.1/32 -p tcp -m tcp --dport 80 -j VB-SVC-0\n"));
        assert!(text.contains(
            "-A VB-SVC-0 -p tcp -m statistic --mode random --probability 0.50000 -j DNAT --to-destination 127.0.0.1:9000\n"
        ));
        assert!(text.contains("-A VB-SVC-0 -p tcp -j DNAT --to-destination 127.0.0.2:9000\n"));
        assert!(text.ends_with("COMMIT\n"));
    }
}
