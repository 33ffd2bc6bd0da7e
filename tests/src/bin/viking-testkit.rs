//! `viking-testkit`: the client side of the integration tests, run as a separate process
//! inside the test cgroup and netns (only processes in the cgroup see the programs).
//!
//! `viking-testkit connect --to 240.0.0.10:80 --count 10` prints one JSON object per
//! attempt: `{"reply":"b0","peer":"127.0.0.1:41234"}` or
//! `{"error":"Connection refused (os error 111)","errno":111,"elapsed_us":55}`.

use std::{
    io::Read,
    net::{SocketAddr, TcpStream, UdpSocket},
    time::{Duration, Instant},
};

use clap::Parser;
use serde::Serialize;

/// Connects to an address repeatedly and reports what answered.
#[derive(Debug, Parser)]
enum Cli {
    /// Connect `count` times (one new socket each) and read the server's reply line.
    Connect {
        /// Destination, usually a VIP.
        #[arg(long)]
        to: SocketAddr,
        /// Number of attempts.
        #[arg(long, default_value_t = 1)]
        count: u32,
        /// Use a connected UDP socket (send "ping", await the reply) instead of TCP.
        #[arg(long)]
        udp: bool,
        /// Per-attempt timeout.
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
        /// Pause between attempts.
        #[arg(long, default_value_t = 0)]
        interval_ms: u64,
    },
}

/// One attempt's outcome.
#[derive(Debug, Serialize)]
struct Attempt {
    #[serde(skip_serializing_if = "Option::is_none")]
    reply: Option<String>,
    /// What `getpeername()` returned on the connected socket.
    #[serde(skip_serializing_if = "Option::is_none")]
    peer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    errno: Option<i32>,
    elapsed_us: u128,
}

fn main() {
    let Cli::Connect { to, count, udp, timeout_ms, interval_ms } = Cli::parse();
    let timeout = Duration::from_millis(timeout_ms);
    for i in 0..count {
        if i > 0 && interval_ms > 0 {
            std::thread::sleep(Duration::from_millis(interval_ms));
        }
        let start = Instant::now();
        let result = if udp { udp_attempt(to, timeout) } else { tcp_attempt(to, timeout) };
        let attempt = match result {
            Ok((reply, peer)) => Attempt {
                reply: Some(reply),
                peer: Some(peer.to_string()),
                error: None,
                errno: None,
                elapsed_us: start.elapsed().as_micros(),
            },
            Err(err) => Attempt {
                reply: None,
                peer: None,
                errno: err.raw_os_error(),
                error: Some(err.to_string()),
                elapsed_us: start.elapsed().as_micros(),
            },
        };
        println!("{}", serde_json::to_string(&attempt).expect("serializable"));
    }
}

fn tcp_attempt(to: SocketAddr, timeout: Duration) -> std::io::Result<(String, SocketAddr)> {
    let mut stream = TcpStream::connect_timeout(&to, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    let peer = stream.peer_addr()?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply)?;
    Ok((reply.trim().to_owned(), peer))
}

fn udp_attempt(to: SocketAddr, timeout: Duration) -> std::io::Result<(String, SocketAddr)> {
    let bind: SocketAddr = if to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse().expect("valid");
    let socket = UdpSocket::bind(bind)?;
    socket.connect(to)?;
    socket.set_read_timeout(Some(timeout))?;
    socket.send(b"ping")?;
    let mut buf = [0u8; 1500];
    let n = socket.recv(&mut buf)?;
    let peer = socket.peer_addr()?;
    let mut reply = String::from_utf8_lossy(&buf[..n]).into_owned();
    reply.truncate(reply.trim_end().len());
    Ok((reply, peer))
}
