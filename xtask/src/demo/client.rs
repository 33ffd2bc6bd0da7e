//! The demo's client, run by `cargo xtask run` inside the demo cgroup and netns: plain
//! HTTP/1.0 requests to a VIP, one connection each.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use anyhow::Context as _;

/// Sends `count` requests to `to` and prints which backend answered each.
pub fn client(to: &str, count: u32) -> anyhow::Result<()> {
    let addr: SocketAddr = to.parse().with_context(|| format!("bad address {to:?}"))?;
    for _ in 0..count {
        let mut stream =
            TcpStream::connect_timeout(&addr, Duration::from_secs(2)).with_context(|| format!("connect to {addr}"))?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        stream.write_all(format!("GET / HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        let body = response.split("\r\n\r\n").nth(1).unwrap_or("").trim();
        println!("  connect({addr}) -> answered by {body}");
    }
    Ok(())
}
