//! The metrics benchmark (`viking-bench metrics`, writes `benchmarks-metrics.md`): how long
//! one `/metrics` scrape takes with 10,000 services installed, against issue 13's target
//! of 100 ms. The real agent (release build) serves them from a static file; every scrape
//! reads every service's and backend's counters from the kernel maps.

use std::{
    fmt::Write as _,
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context as _, ensure};
use viking_tests::{
    Agent, Cgroup,
    config::{ServiceSpec, render},
    pins,
};

use crate::machine::Machine;

/// Services installed.
const SERVICES: usize = 10_000;
/// Distinct backend addresses (two per service, shared as on a real cluster).
const BACKEND_PORTS: usize = 3_000;
/// Scrapes timed.
const SCRAPES: usize = 20;
/// The target: one scrape at 10k services.
const TARGET: Duration = Duration::from_millis(100);

/// Runs the benchmark and writes the report to `path`; returns the report.
pub fn run(machine: &Machine, command_line: &str, path: &Path) -> anyhow::Result<String> {
    let services: Vec<ServiceSpec> = (0..SERVICES)
        .map(|i| {
            let port = 20_000 + (i % BACKEND_PORTS) as u16;
            let backends: [SocketAddr; 2] =
                [SocketAddr::from(([127, 0, 0, 1], port)), SocketAddr::from(([127, 0, 0, 2], port))];
            ServiceSpec::tcp(&format!("s{i}"), &format!("241.0.{}.{}", i / 250, i % 250 + 1), 80, &backends)
        })
        .collect();
    let cgroup = Cgroup::unique().context("creating the bench cgroup")?;
    let pins = pins();
    eprintln!("viking-bench: metrics: installing {SERVICES} services");
    let agent = Agent::start(&cgroup, &pins, &render(&services));
    let endpoint = agent.metrics_addr();
    let mut times = Vec::with_capacity(SCRAPES);
    let mut size = 0;
    for _ in 0..SCRAPES {
        crate::interrupt::check()?;
        let started = Instant::now();
        let body = scrape(endpoint)?;
        times.push(started.elapsed());
        let series = body.lines().filter(|l| l.starts_with("viking_service_redirected_total{")).count();
        ensure!(series == SERVICES, "a scrape showed {series} services, not {SERVICES}");
        size = body.len();
    }
    times.sort();
    let median = times[SCRAPES / 2];
    let max = times[SCRAPES - 1];
    let mut out = String::from("# Metrics benchmark\n\n");
    let _ = writeln!(out, "{}\n", machine.generated_by(command_line));
    let _ = writeln!(
        out,
        "The real agent serves {SERVICES} services from a static file, each with 2 of {} distinct \
         backend addresses; `/metrics` is fetched {SCRAPES} times over HTTP/1.1, one after the other, \
         each answer checked to hold every service. A scrape reads every service's and every \
         backend's counters from the kernel maps.\n",
        2 * BACKEND_PORTS
    );
    let _ = writeln!(out, "| services | backends | answer | scrape p50 | max |\n|---:|---:|---:|---:|---:|");
    let _ = writeln!(
        out,
        "| {SERVICES} | {} | {:.1} MB | {:.1} ms | {:.1} ms |\n",
        2 * BACKEND_PORTS,
        size as f64 / 1e6,
        ms(median),
        ms(max)
    );
    let met = if max <= TARGET { "met" } else { "**missed**" };
    let _ = writeln!(
        out,
        "Target: a scrape at 10k services ≤ {} ms: slowest {:.1} ms, {met}.",
        TARGET.as_millis(),
        ms(max)
    );
    std::fs::write(path, &out).with_context(|| format!("writing {}", path.display()))?;
    Ok(out)
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// `GET /metrics`: the body of a 200 answer.
fn scrape(endpoint: SocketAddr) -> anyhow::Result<String> {
    let mut stream = TcpStream::connect_timeout(&endpoint, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET /metrics HTTP/1.1\r\nHost: {endpoint}\r\nConnection: close\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response.split_once("\r\n\r\n").context("not an HTTP answer")?;
    ensure!(head.starts_with("HTTP/1.1 200"), "{}", head.lines().next().unwrap_or_default());
    Ok(body.to_owned())
}
