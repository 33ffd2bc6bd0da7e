//! The load generator, run by the driver as `viking-bench load …` inside a bench cgroup and
//! namespace, so its connects pass through whatever that cgroup and namespace apply (Viking's
//! programs, the baseline program, iptables rules, or nothing). It prints one JSON
//! [`Outcome`] on stdout.
//!
//! Three workloads, each bounded by a duration and an operation count:
//! - `connections`: N threads each loop connect → request → read to EOF → close, rotating
//!   over the targets (new TCP connections per second);
//! - `latency`: one persistent connection, one request at a time, every round trip timed;
//! - `bulk`: one connection streaming from the backend (bytes per second).

use std::{
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream},
    sync::atomic::{AtomicI64, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context as _, ensure};
use serde::{Deserialize, Serialize};
use socket2::{Domain, Protocol, Socket, Type};

use crate::protocol::{REQUEST_BULK, REQUEST_CLOSE, REQUEST_KEEP, RESPONSE};

/// A connect or read that takes longer than this counts as an error instead of stalling
/// the run (e.g. a SYN dropped by a full conntrack table).
const IO_TIMEOUT: Duration = Duration::from_secs(1);
/// Hard cap on operations per run, whatever the duration.
const MAX_OPERATIONS: i64 = 50_000_000;

/// Which workload to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// New connections per second (one request per connection).
    Connections,
    /// Round-trip latency on one persistent connection.
    Latency,
    /// Bytes per second on one connection.
    Bulk,
}

/// Arguments of `viking-bench load`.
#[derive(Clone, Debug, clap::Args)]
pub struct Args {
    /// The workload.
    #[arg(long, value_enum)]
    pub workload: Workload,
    /// First target address; the others follow it (consecutive IPv4 addresses, same port).
    #[arg(long)]
    pub target: SocketAddrV4,
    /// Number of consecutive target addresses to rotate over.
    #[arg(long, default_value_t = 1)]
    pub targets: u32,
    /// Client threads (`connections` only).
    #[arg(long, default_value_t = 1)]
    pub threads: u32,
    /// How long to run, in milliseconds.
    #[arg(long)]
    pub duration_ms: u64,
}

impl Args {
    /// The command-line form of these arguments.
    pub fn to_args(&self) -> Vec<String> {
        let workload = match self.workload {
            Workload::Connections => "connections",
            Workload::Latency => "latency",
            Workload::Bulk => "bulk",
        };
        vec![
            "load".into(),
            "--workload".into(),
            workload.into(),
            "--target".into(),
            self.target.to_string(),
            "--targets".into(),
            self.targets.to_string(),
            "--threads".into(),
            self.threads.to_string(),
            "--duration-ms".into(),
            self.duration_ms.to_string(),
        ]
    }
}

/// What one load run measured.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Outcome {
    /// Completed operations (connections, requests, or reads).
    pub operations: u64,
    /// Failed operations.
    pub errors: u64,
    /// The first error, for the report.
    pub first_error: Option<String>,
    /// Wall time of the run, in seconds.
    pub seconds: f64,
    /// Bytes received (`bulk`).
    pub bytes: u64,
    /// Round-trip times in nanoseconds at the 50th and 99th percentile (`latency`).
    pub p50_ns: u64,
    /// See `p50_ns`.
    pub p99_ns: u64,
}

impl Outcome {
    /// Operations per second.
    pub fn rate(&self) -> f64 {
        self.operations as f64 / self.seconds
    }
}

/// Entry point of `viking-bench load`.
pub fn main(args: &Args) -> anyhow::Result<()> {
    ensure!(args.targets >= 1 && args.threads >= 1, "--targets and --threads must be at least 1");
    let duration = Duration::from_millis(args.duration_ms);
    let outcome = match args.workload {
        Workload::Connections => connections(args, duration),
        Workload::Latency => latency(args.target, duration)?,
        Workload::Bulk => bulk(args.target, duration)?,
    };
    println!("{}", serde_json::to_string(&outcome)?);
    Ok(())
}

/// The `i`-th target, wrapping around.
fn target(args: &Args, i: u64) -> SocketAddr {
    let base = u32::from(*args.target.ip());
    let offset = (i % u64::from(args.targets)) as u32;
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(base + offset), args.target.port()))
}

fn connections(args: &Args, duration: Duration) -> Outcome {
    let start = Instant::now();
    let deadline = start + duration;
    // Shared by the threads; it may go below zero by at most one per thread.
    let budget = AtomicI64::new(MAX_OPERATIONS);
    let threads = u64::from(args.threads);
    let per_thread: Vec<Outcome> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let budget = &budget;
                scope.spawn(move || {
                    let mut outcome = Outcome::default();
                    // Thread t takes targets t, t + threads, …: together the threads visit
                    // every target in turn.
                    let mut i = t;
                    while Instant::now() < deadline && budget.fetch_sub(1, Ordering::Relaxed) > 0 {
                        match one_connection(target(args, i)) {
                            Ok(()) => outcome.operations += 1,
                            Err(err) => {
                                outcome.errors += 1;
                                outcome.first_error.get_or_insert_with(|| err.to_string());
                            }
                        }
                        i += threads;
                    }
                    outcome
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_default()).collect()
    });
    let mut total = Outcome { seconds: start.elapsed().as_secs_f64(), ..Outcome::default() };
    for outcome in per_thread {
        total.operations += outcome.operations;
        total.errors += outcome.errors;
        if total.first_error.is_none() {
            total.first_error = outcome.first_error;
        }
    }
    total
}

/// connect → `GET /close` → read the response to EOF → close.
fn one_connection(to: SocketAddr) -> std::io::Result<()> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    // A blocking connect honours SO_SNDTIMEO; reads honour SO_RCVTIMEO.
    socket.set_write_timeout(Some(IO_TIMEOUT))?;
    socket.set_read_timeout(Some(IO_TIMEOUT))?;
    socket.connect(&to.into()).map_err(|err| match rustix::io::Errno::from_io_error(&err) {
        // What a blocking connect returns when SO_SNDTIMEO expires.
        Some(rustix::io::Errno::INPROGRESS) => {
            std::io::Error::other(format!("connect to {to} timed out after {IO_TIMEOUT:?}"))
        }
        _ => err,
    })?;
    let mut stream: TcpStream = socket.into();
    stream.write_all(REQUEST_CLOSE)?;
    let mut buf = [0u8; 256];
    let mut received = 0;
    loop {
        match stream.read(&mut buf)? {
            0 => break,
            n => received += n,
        }
    }
    if received != RESPONSE.len() {
        return Err(std::io::Error::other(format!("short response: {received} bytes")));
    }
    Ok(())
}

fn connect(to: SocketAddrV4) -> anyhow::Result<TcpStream> {
    let stream =
        TcpStream::connect_timeout(&SocketAddr::V4(to), IO_TIMEOUT).with_context(|| format!("connecting to {to}"))?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

fn latency(to: SocketAddrV4, duration: Duration) -> anyhow::Result<Outcome> {
    let mut stream = connect(to)?;
    let mut response = [0u8; RESPONSE.len()];
    // One sample per request; a few seconds at tens of microseconds each is a few hundred
    // thousand samples, sorted once at the end.
    let mut samples: Vec<u64> = Vec::with_capacity(1 << 20);
    let start = Instant::now();
    let deadline = start + duration;
    let mut outcome = Outcome::default();
    while Instant::now() < deadline && (samples.len() as i64) < MAX_OPERATIONS {
        let sent = Instant::now();
        let result = stream.write_all(REQUEST_KEEP).and_then(|()| stream.read_exact(&mut response));
        if let Err(err) = result {
            outcome.errors += 1;
            outcome.first_error = Some(err.to_string());
            break;
        }
        samples.push(sent.elapsed().as_nanos() as u64);
    }
    outcome.seconds = start.elapsed().as_secs_f64();
    outcome.operations = samples.len() as u64;
    samples.sort_unstable();
    outcome.p50_ns = percentile(&samples, 0.50);
    outcome.p99_ns = percentile(&samples, 0.99);
    Ok(outcome)
}

/// The value below which `fraction` of the sorted samples lie (0 when there are none).
fn percentile(sorted: &[u64], fraction: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((sorted.len() as f64 * fraction).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn bulk(to: SocketAddrV4, duration: Duration) -> anyhow::Result<Outcome> {
    let mut stream = connect(to)?;
    stream.write_all(REQUEST_BULK)?;
    let mut buf = vec![0u8; 256 * 1024];
    let start = Instant::now();
    let deadline = start + duration;
    let mut outcome = Outcome::default();
    while Instant::now() < deadline && (outcome.operations as i64) < MAX_OPERATIONS {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                outcome.bytes += n as u64;
                outcome.operations += 1;
            }
            Err(err) => {
                outcome.errors += 1;
                outcome.first_error = Some(err.to_string());
                break;
            }
        }
    }
    outcome.seconds = start.elapsed().as_secs_f64();
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let samples: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&samples, 0.50), 50);
        assert_eq!(percentile(&samples, 0.99), 99);
        assert_eq!(percentile(&[7], 0.99), 7);
        assert_eq!(percentile(&[], 0.5), 0);
    }

    #[test]
    fn targets_rotate_over_consecutive_addresses() {
        let args = Args {
            workload: Workload::Connections,
            target: "240.0.0.255:80".parse().unwrap(),
            targets: 3,
            threads: 1,
            duration_ms: 1,
        };
        let seen: Vec<String> = (0..4).map(|i| target(&args, i).to_string()).collect();
        assert_eq!(seen, ["240.0.0.255:80", "240.0.1.0:80", "240.0.1.1:80", "240.0.0.255:80"]);
    }
}
