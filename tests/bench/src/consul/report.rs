//! `docs/benchmarks-consul.md` and its plot.

use std::{fmt::Write as _, path::Path, time::Duration};

use super::{
    CHANGES, CHURN_RATE, ConsulPoint, INSTANCES, LOAD_WINDOW, Transport,
    cluster::{self, ClusterResult},
    server::INSTANCES_PER_NODE,
};
use crate::machine::Machine;

/// Hosts of the cluster the load on Consul is stated for.
const CLUSTER_HOSTS: f64 = 500.0;
/// Consul's default blocking wait and its mean jitter (wait/16, uniform): how often an
/// idle blocking query comes back.
const IDLE_RETURN: Duration = Duration::from_millis(300_000 + 300_000 / 32);

/// Everything the Consul benchmark measured.
#[derive(Debug)]
pub struct Results {
    /// One per transport and size.
    pub points: Vec<ConsulPoint>,
    /// The simulated cluster, or why it failed (the other results are still written).
    pub cluster: Result<ClusterResult, String>,
}

fn percentile(samples: &[Duration], p: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(index).copied().unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn mib(kib: u64) -> u64 {
    kib / 1024
}

/// A target line: met, or missed by how much.
fn target(text: &mut String, what: &str, value: f64, limit: f64, unit: &str) {
    let verdict = if value <= limit {
        "met".to_owned()
    } else {
        format!("**missed** by {:.1}× ({:.1} {unit} over)", value / limit, value - limit)
    };
    let _ = writeln!(text, "- {what}: {value:.1} {unit} against ≤ {limit} {unit}: {verdict}");
}

/// Writes the report and the plot next to it; returns the report.
pub fn write(results: &Results, machine: &Machine, command_line: &str, path: &Path) -> anyhow::Result<String> {
    let plot_name = "benchmarks-consul.png";
    if let Some(dir) = path.parent() {
        crate::plot::consul_changes(&results.points, &dir.join(plot_name))?;
    }
    let mut text = String::new();
    let _ = writeln!(text, "# Consul benchmark\n");
    let _ = writeln!(text, "{}\n", machine.generated_by(command_line));
    let _ = writeln!(
        text,
        "The in-repo Consul test server (`tests/consul-test-server`, release build, on the same 2 cores) holds N \
         services with {INSTANCES} passing instances each, on nodes of {INSTANCES_PER_NODE} instances (the \
         instances of a service on different nodes); the real `viking-agent` watches it: the node list, each node's \
         instances and checks (`/v1/catalog/node/:node`, `/v1/health/node/:node`: two blocking queries per node, \
         streams of a few HTTP/2 connections over HTTPS, one connection each over HTTP/1.1), the VIP records. \
         **Cold sync**: from the agent's start (program loading included) until the \
         kernel holds every service with its backends, every VIP allocated first (in transactions of 32 services); \
         **warm**: the same when the VIPs exist, as after a restart or on a second host. **Change**: a new instance \
         is registered with `PUT /v1/catalog/register` over HTTP(S); timed from that call until the pinned map shows \
         the service's new backend ({CHANGES} changes per size, services spread over the range), once every blocking \
         query is open. **RSS**: the agent's `VmRSS` after the changes. **Connections**: TCP connections open on the \
         server; **queries**: blocking queries the agent holds there.\n"
    );
    let _ = writeln!(text, "![change to kernel by services](benchmarks-consul.png)\n");
    let _ = writeln!(
        text,
        "| transport | services | nodes | cold sync | agent CPU (cold) | warm sync | watches open | change p50 | p99 | max | agent RSS | connections | blocking queries |"
    );
    let _ = writeln!(text, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for p in &results.points {
        let _ = writeln!(
            text,
            "| {} | {} | {} | {} | {} | {} | +{} | {} | {} | {} | {} MiB | {} | {} |",
            p.transport.name(),
            p.services,
            p.nodes,
            secs(p.cold_sync),
            secs(p.cold_cpu),
            secs(p.warm_sync),
            ms(p.settle),
            ms(percentile(&p.changes, 0.5)),
            ms(percentile(&p.changes, 0.99)),
            ms(percentile(&p.changes, 1.0)),
            mib(p.rss_kib),
            p.connections,
            p.blocking_queries
        );
    }

    let _ = writeln!(text, "\n## Targets (HTTPS)\n");
    let https =
        |services: u32| results.points.iter().find(|p| p.transport == Transport::Https && p.services == services);
    let p99_ms = |p: &ConsulPoint| percentile(&p.changes, 0.99).as_secs_f64() * 1000.0;
    if let Some(p) = https(10_000) {
        target(&mut text, "10k: cold sync", p.cold_sync.as_secs_f64(), 1.5, "s");
        target(&mut text, "10k: warm sync", p.warm_sync.as_secs_f64(), 0.5, "s");
        target(&mut text, "10k: change → kernel p99", p99_ms(p), 10.0, "ms");
        target(&mut text, "10k: agent RSS", mib(p.rss_kib) as f64, 64.0, "MiB");
        target(&mut text, "10k: connections to Consul", p.connections as f64, 16.0, "");
    }
    if let Some(p) = https(100_000) {
        target(&mut text, "100k: cold sync", p.cold_sync.as_secs_f64(), 15.0, "s");
        target(&mut text, "100k: change → kernel p99", p99_ms(p), 20.0, "ms");
        target(&mut text, "100k: agent RSS", mib(p.rss_kib) as f64, 256.0, "MiB");
        if let Some(small) = https(1_000) {
            target(&mut text, "flat: p99 at 100k over p99 at 1k", p99_ms(p) / p99_ms(small), 2.0, "×");
        }
    }

    let _ = writeln!(text, "\n## Load on Consul\n");
    let _ = writeln!(
        text,
        "Requests the server answered per second for one agent, over {} s with nothing changing and over {} s of \
         churn ({CHURN_RATE} health checks per second flipping between critical and passing), the server's CPU \
         (share of one core) under churn, and the size of one `/v1/health/state/any` answer: what a design \
         watching one global endpoint would download, per agent, after every change anywhere. An idle blocking \
         query comes back after Consul's wait (5 min) plus its jitter, so an agent's idle rate settles at its \
         blocking queries ÷ {:.0} s. The {hosts}-host column is for a cluster of {hosts} hosts, each a Consul \
         node: every agent holds 2 × {hosts} + 2 blocking queries (the node list, the VIP records, two per \
         node) whatever the services, so the cluster's queries and idle rate follow from the hosts alone; its \
         rate under churn is the measured per-agent rate times {hosts}.\n",
        LOAD_WINDOW.as_secs(),
        LOAD_WINDOW.as_secs(),
        IDLE_RETURN.as_secs_f64(),
        hosts = CLUSTER_HOSTS
    );
    // Per agent in a cluster of CLUSTER_HOSTS nodes: the node list, the VIP records, two
    // per node.
    let cluster_queries = CLUSTER_HOSTS * (2.0 * CLUSTER_HOSTS + 2.0);
    let _ = writeln!(
        text,
        "| transport | services | req/s idle (window) | req/s idle (steady) | req/s under churn | server CPU under churn | {CLUSTER_HOSTS}-host cluster: blocking queries, req/s idle, req/s under churn | `/v1/health/state/any` answer |",
    );
    let _ = writeln!(text, "|---|---:|---:|---:|---:|---:|---|---:|");
    for p in &results.points {
        let steady = p.blocking_queries as f64 / IDLE_RETURN.as_secs_f64();
        let (bytes, time) = p.global_watch;
        let _ = writeln!(
            text,
            "| {} | {} | {:.1} | {:.1} | {:.1} | {:.0} % | {:.1} M, {:.0}, {:.0} | {:.1} MB in {} |",
            p.transport.name(),
            p.services,
            p.idle_rps,
            steady,
            p.churn_rps,
            p.churn_server_cpu * 100.0,
            cluster_queries / 1e6,
            cluster_queries / IDLE_RETURN.as_secs_f64(),
            p.churn_rps * CLUSTER_HOSTS,
            bytes as f64 / 1e6,
            ms(time)
        );
    }

    let _ = writeln!(text, "\n## A cluster, simulated\n");
    let _ = writeln!(
        text,
        "{} agents (the agent's real Consul source, merge and reconciler, over maps that keep nothing: every step \
         from Consul's answer to the map write, without a kernel) against one test server with {} services of \
         {INSTANCES} instances, over HTTPS, all on this machine's 2 cores. The first agent allocates the VIPs; the \
         others then start together. During the samples, {} health checks per second flip in the background; each \
         sample registers a new instance over HTTP and is timed until the last agent has written it.\n",
        cluster::AGENTS,
        cluster::SERVICES,
        cluster::CHURN_RATE
    );
    let c = match &results.cluster {
        Ok(cluster) => cluster,
        Err(error) => {
            let _ = writeln!(text, "**The simulation failed:** {error}");
            std::fs::write(path, &text)?;
            return Ok(text);
        }
    };
    let _ = writeln!(
        text,
        "| agents | services | sync of the others | all agents have a change: p50 | p99 | max | server req/s | server CPU | blocking queries | connections |"
    );
    let _ = writeln!(text, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let _ = writeln!(
        text,
        "| {} | {} | {} | {} | {} | {} | {:.0} | {:.0} % | {} | {} |",
        cluster::AGENTS,
        cluster::SERVICES,
        secs(c.sync),
        ms(percentile(&c.converge, 0.5)),
        ms(percentile(&c.converge, 0.99)),
        ms(percentile(&c.converge, 1.0)),
        c.server_rps,
        c.server_cpu * 100.0,
        c.blocking_queries,
        c.connections
    );
    std::fs::write(path, &text)?;
    Ok(text)
}
