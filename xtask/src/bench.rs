//! `cargo xtask bench`: installs what the benchmark compares Viking with, builds the agent
//! and the benchmark driver in release mode, and runs the driver (`tests/bench`), which
//! writes `docs/benchmarks.md` and its plot, then its Consul part
//! (`docs/benchmarks-consul.md`), its container part (`docs/benchmarks-containers.md`) and
//! its metrics part (`docs/benchmarks-metrics.md`).

use std::process::Command;

use anyhow::{Context as _, ensure};

use crate::{cargo, setup, workspace_root};

/// Debian packages the benchmark uses, and why each is needed.
const BENCH_PACKAGES: &[(&str, &str)] = &[
    ("haproxy", "the userspace proxy the benchmark compares with"),
    ("iptables", "the DNAT rules the benchmark compares with (inside its own netns)"),
    ("iproute2", "`ip netns exec` and `ip route` inside the benchmark's netns"),
    ("fonts-dejavu-core", "the font of the benchmark's plot"),
];

/// Runs the benchmark; `quick` selects the short plan.
pub fn run(quick: bool) -> anyhow::Result<()> {
    setup::require_root("the benchmark loads BPF programs and creates cgroups and network namespaces")?;
    setup::run()?;
    setup::apt_packages(BENCH_PACKAGES)?;
    let agent = cargo::build_agent(cargo::Profile::Release)?;
    let bench = cargo::build_bench()?;
    let root = workspace_root();
    let driver = |subcommand: &str| {
        let mut command = Command::new(&bench);
        command
            .arg(subcommand)
            .arg("--agent")
            .arg(&agent)
            .arg("--out")
            .arg(root.join("docs"))
            .arg("--work-dir")
            .arg(root.join("target").join("viking-bench"))
            .arg("--command-line")
            .arg(if quick { "cargo xtask bench --quick" } else { "cargo xtask bench" });
        command
    };
    // Ctrl-C reaches the driver too (same process group); it stops between two bounded
    // measurements and removes what it created. Waiting for it here keeps the terminal
    // until that cleanup is done.
    ctrlc::set_handler(|| {}).context("installing the Ctrl-C handler")?;
    eprintln!("xtask: running {}", bench.display());

    // New connections, latency and bulk: Viking against direct, iptables and HAProxy.
    let mut command = driver("run");
    if quick {
        command.arg("--quick");
    }
    let status = command.status().with_context(|| format!("starting {}", bench.display()))?;
    ensure!(status.success(), "the benchmark failed ({status})");

    // Consul to kernel: sync, change latency, memory and load on Consul for 1k, 10k and
    // 100k services, and a simulated cluster.
    let status = driver("consul").status().with_context(|| format!("starting {}", bench.display()))?;
    ensure!(status.success(), "the Consul benchmark failed ({status})");

    // Container policy with a real dockerd: first connects, and the cost at start.
    let status = driver("containers").status().with_context(|| format!("starting {}", bench.display()))?;
    ensure!(status.success(), "the container benchmark failed ({status})");

    // The metrics endpoint: one scrape with 10k services.
    let status = driver("metrics").status().with_context(|| format!("starting {}", bench.display()))?;
    ensure!(status.success(), "the metrics benchmark failed ({status})");
    Ok(())
}
