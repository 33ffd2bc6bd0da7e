//! The benchmark's own world: network namespaces with backend servers, the cgroups the
//! load generator runs in, and running the generator inside them. Every piece removes
//! itself on drop.

use std::{
    io::Read as _,
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{Context as _, bail};
use viking_sandbox::{Cgroup, Netns, process};

use crate::{
    load::{self, Outcome},
    server::Backends,
};

/// A network namespace with the backend servers on its loopback. The namespace is named
/// (`/run/netns/<name>`) so that `ip netns exec` can run iptables and ip inside it.
#[derive(Debug)]
pub struct Namespace {
    // Held for its drop, which stops the servers; declared before `netns` so that happens
    // before the namespace goes.
    _backends: Backends,
    netns: Netns,
    name: String,
}

impl Namespace {
    /// Creates the namespace `name` (replacing a leftover of a killed run), tunes it and
    /// starts the backends.
    pub fn create(name: &str, server_workers: usize) -> anyhow::Result<Self> {
        let netns = Netns::named(name).with_context(|| format!("creating network namespace {name}"))?;
        netns.run(tune)?.with_context(|| format!("tuning network namespace {name}"))?;
        let backends = Backends::start(&netns, server_workers)?;
        Ok(Self { _backends: backends, netns, name: name.to_owned() })
    }

    /// The namespace.
    pub fn netns(&self) -> &Netns {
        &self.netns
    }

    /// A command that runs inside the namespace (`ip netns exec <name> …`).
    pub fn exec(&self, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name, program]);
        command
    }

    /// Reads a per-namespace sysctl, e.g. `net/netfilter/nf_conntrack_count`.
    pub fn sysctl(&self, key: &str) -> anyhow::Result<String> {
        let path = format!("/proc/sys/{key}");
        let value = self.netns.run(move || std::fs::read_to_string(path))??;
        Ok(value.trim().to_owned())
    }
}

/// Per-namespace settings, identical for every setup:
/// - the whole ephemeral port range, so a fast client does not run out of ports;
/// - TCP timestamps without per-destination random offsets (`tcp_timestamps = 2`). The
///   server closes first and keeps TIME_WAIT; a new SYN on the same 4-tuple is accepted
///   only if its timestamp is newer. With iptables DNAT the client stamps its SYN with the
///   offset of the VIP it connected to, so after a connection through another VIP to the
///   same backend half the SYNs look older, are ignored and wait a second for their
///   retransmit — an artefact of running client and server on one loopback that would
///   bury iptables' rule cost. Viking and direct connects are not affected (the offset
///   comes from the backend address).
fn tune() -> std::io::Result<()> {
    std::fs::write("/proc/sys/net/ipv4/ip_local_port_range", "1024 65535")?;
    std::fs::write("/proc/sys/net/ipv4/tcp_timestamps", "2")
}

/// The cgroups of the load generator: one without programs, one Viking's agent attaches
/// to, one the baseline program attaches to.
#[derive(Debug)]
pub struct Cgroups {
    /// No program attached: direct, iptables and HAProxy runs.
    pub plain: Cgroup,
    /// Viking's programs are attached here.
    pub viking: Cgroup,
    /// The baseline redirect program is attached here.
    pub baseline: Cgroup,
}

impl Cgroups {
    /// Creates (or takes over, after a killed run) the three cgroups.
    pub fn create() -> anyhow::Result<Self> {
        let cgroup = |name: &str| Cgroup::named(name).with_context(|| format!("creating cgroup {name}"));
        Ok(Self {
            plain: cgroup("viking-bench-plain")?,
            viking: cgroup("viking-bench-viking")?,
            baseline: cgroup("viking-bench-baseline")?,
        })
    }
}

/// Runs the load generator inside `cgroup` and `namespace` and returns what it measured.
/// The child is killed if it overruns its duration by more than a grace period.
pub fn run_load(cgroup: &Cgroup, namespace: &Namespace, args: &load::Args) -> anyhow::Result<Outcome> {
    let exe = std::env::current_exe().context("finding the benchmark binary")?;
    let mut command = Command::new(exe);
    command.args(args.to_args()).stdout(Stdio::piped()).stderr(Stdio::piped());
    process::place(&mut command, cgroup, namespace.netns()).context("placing the load generator")?;
    let mut child = command.spawn().context("starting the load generator")?;
    let limit = Duration::from_millis(args.duration_ms) + Duration::from_secs(20);
    let Some(status) = process::wait_bounded(&mut child, limit) else {
        bail!("the load generator did not finish within {} ms + 20 s; killed", args.duration_ms);
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    if let Some(mut out) = child.stdout.take() {
        out.read_to_string(&mut stdout)?;
    }
    if let Some(mut err) = child.stderr.take() {
        err.read_to_string(&mut stderr)?;
    }
    if !status.success() {
        bail!("the load generator failed ({status}): {}", stderr.trim());
    }
    serde_json::from_str(stdout.trim()).with_context(|| format!("reading the load generator's output {stdout:?}"))
}
