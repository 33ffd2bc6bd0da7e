//! `viking-testkit`: the client side of the integration tests, run as a separate process
//! inside the test cgroup and netns (only processes in the cgroup see the programs).
//!
//! Every subcommand prints one JSON object per attempt, e.g.
//! `{"reply":"b0","peer":"240.0.0.10:80","elapsed_us":80}` or
//! `{"error":"Connection refused (os error 111)","errno":111,"elapsed_us":55}`.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream, UdpSocket},
    time::{Duration, Instant},
};

use clap::Parser;
use serde::Serialize;

/// Connects to an address and reports what answered.
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
        /// Keep every socket open until this long after the last attempt (open
        /// connections, for least_conn).
        #[arg(long, default_value_t = 0)]
        hold_ms: u64,
    },
    /// Send `count` datagrams from one unconnected UDP socket with `sendto`, reading each
    /// reply with `recvfrom` (reports the reply's source address as `peer`).
    Sendto {
        /// Destination, usually a VIP.
        #[arg(long)]
        to: SocketAddr,
        /// Number of datagrams.
        #[arg(long, default_value_t = 1)]
        count: u32,
    },
    /// Keep one connected UDP socket talking to `to` for `duration_ms`, one request every
    /// `interval_ms`; when the socket fails (e.g. destroyed by the agent), report the error
    /// and connect a new one.
    UdpSession {
        /// Destination, usually a VIP.
        #[arg(long)]
        to: SocketAddr,
        /// How long to run.
        #[arg(long)]
        duration_ms: u64,
        /// Pause between requests.
        #[arg(long, default_value_t = 20)]
        interval_ms: u64,
    },
}

/// One attempt's outcome.
#[derive(Debug, Serialize)]
struct Attempt {
    #[serde(skip_serializing_if = "Option::is_none")]
    reply: Option<String>,
    /// The peer as the socket API reports it (`getpeername`, or `recvfrom`'s source).
    #[serde(skip_serializing_if = "Option::is_none")]
    peer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    errno: Option<i32>,
    elapsed_us: u128,
}

impl Attempt {
    fn report(start: Instant, result: std::io::Result<(String, SocketAddr)>) {
        let elapsed_us = start.elapsed().as_micros();
        let attempt = match result {
            Ok((reply, peer)) => {
                Attempt { reply: Some(reply), peer: Some(peer.to_string()), error: None, errno: None, elapsed_us }
            }
            Err(err) => {
                Attempt { reply: None, peer: None, errno: err.raw_os_error(), error: Some(err.to_string()), elapsed_us }
            }
        };
        println!("{}", serde_json::to_string(&attempt).expect("serializable"));
        let _ = std::io::stdout().flush();
    }
}

const TIMEOUT: Duration = Duration::from_secs(2);

fn main() {
    match Cli::parse() {
        Cli::Connect { to, count, udp, timeout_ms, interval_ms, hold_ms } => {
            let timeout = Duration::from_millis(timeout_ms);
            let mut held = Vec::new();
            for i in 0..count {
                if i > 0 && interval_ms > 0 {
                    std::thread::sleep(Duration::from_millis(interval_ms));
                }
                let start = Instant::now();
                let result = if udp {
                    udp_attempt(to, timeout).map(|(r, p, _)| (r, p))
                } else {
                    tcp_attempt(to, timeout, &mut held)
                };
                Attempt::report(start, result);
            }
            std::thread::sleep(Duration::from_millis(hold_ms));
        }
        Cli::Sendto { to, count } => {
            let socket = unbound_udp(to).expect("udp socket");
            for _ in 0..count {
                let start = Instant::now();
                Attempt::report(start, sendto_attempt(&socket, to));
            }
        }
        Cli::UdpSession { to, duration_ms, interval_ms } => udp_session(to, duration_ms, interval_ms),
    }
}

fn tcp_attempt(to: SocketAddr, timeout: Duration, held: &mut Vec<TcpStream>) -> std::io::Result<(String, SocketAddr)> {
    let mut stream = TcpStream::connect_timeout(&to, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    let peer = stream.peer_addr()?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply)?;
    held.push(stream);
    Ok((reply.trim().to_owned(), peer))
}

fn unbound_udp(to: SocketAddr) -> std::io::Result<UdpSocket> {
    let bind: SocketAddr = if to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse().expect("valid");
    let socket = UdpSocket::bind(bind)?;
    socket.set_read_timeout(Some(TIMEOUT))?;
    Ok(socket)
}

/// A new connected UDP socket, one request; returns the socket for reuse.
fn udp_attempt(to: SocketAddr, timeout: Duration) -> std::io::Result<(String, SocketAddr, UdpSocket)> {
    let socket = unbound_udp(to)?;
    socket.set_read_timeout(Some(timeout))?;
    socket.connect(to)?;
    let (reply, peer) = udp_request(&socket)?;
    Ok((reply, peer, socket))
}

fn udp_request(socket: &UdpSocket) -> std::io::Result<(String, SocketAddr)> {
    socket.send(b"ping")?;
    let mut buf = [0u8; 1500];
    let n = socket.recv(&mut buf)?;
    Ok((String::from_utf8_lossy(&buf[..n]).trim_end().to_owned(), socket.peer_addr()?))
}

fn sendto_attempt(socket: &UdpSocket, to: SocketAddr) -> std::io::Result<(String, SocketAddr)> {
    socket.send_to(b"ping", to)?;
    let mut buf = [0u8; 1500];
    let (n, from) = socket.recv_from(&mut buf)?;
    Ok((String::from_utf8_lossy(&buf[..n]).trim_end().to_owned(), from))
}

fn udp_session(to: SocketAddr, duration_ms: u64, interval_ms: u64) {
    let deadline = Instant::now() + Duration::from_millis(duration_ms);
    let mut socket: Option<UdpSocket> = None;
    while Instant::now() < deadline {
        let start = Instant::now();
        let result = match socket.take() {
            Some(existing) => udp_request(&existing).map(|(reply, peer)| (reply, peer, existing)),
            None => udp_attempt(to, TIMEOUT),
        };
        match result {
            Ok((reply, peer, kept)) => {
                socket = Some(kept);
                Attempt::report(start, Ok((reply, peer)));
            }
            Err(err) => Attempt::report(start, Err(err)),
        }
        std::thread::sleep(Duration::from_millis(interval_ms));
    }
}
