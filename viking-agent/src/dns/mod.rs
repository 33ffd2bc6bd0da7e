//! Names for services: a DNS responder answering `<service>.service.<domain>` with the
//! service's VIP (`A` or `AAAA`), over UDP and TCP. What it answers for every kind of name
//! is in [`answer`]; the wire format, TCP framing, truncation and EDNS are hickory's.
//!
//! The run loop publishes a [`NameTable`] built from the served state through a `watch`
//! channel after each applied change; queries read the latest one, so DNS follows the
//! kernel's maps. hickory-server logs every query at `info` (target `hickory_server`), so
//! the agent's default log filter should lower that target to `warn`.

mod answer;
mod handler;
mod table;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context as _;
use hickory_server::Server;
use prometheus_client::metrics::{counter::Counter, family::Family};
use tokio::{
    net::{TcpListener, UdpSocket},
    sync::watch,
};

use self::{answer::Zone, handler::Handler};
pub use self::{handler::answer_udp_message, table::NameTable};
use crate::metrics::sources::RcodeLabels;

/// A TCP client that sends no query for this long is disconnected, so idle connections
/// cannot pile up.
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Responses queued per TCP connection before the connection applies backpressure.
const TCP_RESPONSE_QUEUE: usize = 32;

/// The responder's settings (`[dns]` in the config file; see `config::dns`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsSettings {
    /// Addresses to answer on, over both UDP and TCP.
    pub listen: Vec<SocketAddr>,
    /// The zone: names are `<service>.service.<domain>`. Lower-case, no final dot.
    pub domain: String,
    /// TTL in seconds of every answer, and of negative answers (the SOA minimum).
    pub ttl: u32,
}

/// A bound responder; [`DnsServer::run`] answers until an error.
pub struct DnsServer {
    server: Server<Handler>,
    local_addrs: Vec<SocketAddr>,
}

impl DnsServer {
    /// Binds UDP and TCP on every listen address. Port 0 picks a free port, the same one
    /// for UDP and TCP (for tests). Fails naming the address that cannot be bound.
    /// Every response sent is counted in `responses` by its code.
    pub async fn bind(
        settings: &DnsSettings,
        names: watch::Receiver<Arc<NameTable>>,
        responses: Family<RcodeLabels, Counter>,
    ) -> anyhow::Result<Self> {
        let zone = Zone::new(&settings.domain, settings.ttl)
            .with_context(|| format!("dns: `dns.domain` = {:?} is not a DNS name", settings.domain))?;
        let mut server = Server::new(Handler { zone, names, responses });
        let mut local_addrs = Vec::with_capacity(settings.listen.len());
        for listen in &settings.listen {
            let (udp, tcp, local) = bind_pair(*listen).await?;
            server.register_socket(udp);
            server.register_listener(tcp, TCP_IDLE_TIMEOUT, TCP_RESPONSE_QUEUE);
            local_addrs.push(local);
        }
        Ok(Self { server, local_addrs })
    }

    /// The bound addresses, one per listen address, in order.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// Answers queries. Returns only when a socket fails for good.
    pub async fn run(mut self) -> anyhow::Result<()> {
        self.server.block_until_done().await.context("dns: responder stopped")
    }
}

/// A UDP socket and a TCP listener on the same address. With port 0 the kernel picks the
/// UDP port, which TCP may already use (an ephemeral port of some connection): then the
/// pair is tried again on another port.
async fn bind_pair(listen: SocketAddr) -> anyhow::Result<(UdpSocket, TcpListener, SocketAddr)> {
    const ATTEMPTS_ON_ANY_PORT: usize = 16;
    let attempts = if listen.port() == 0 { ATTEMPTS_ON_ANY_PORT } else { 1 };
    let mut last_error = None;
    for _ in 0..attempts {
        let udp = UdpSocket::bind(listen).await.with_context(|| format!("dns: binding UDP {listen} (`dns.listen`)"))?;
        let local = udp.local_addr()?;
        match TcpListener::bind(local).await {
            Ok(tcp) => return Ok((udp, tcp, local)),
            Err(err) => {
                last_error = Some(anyhow::Error::new(err).context(format!("dns: binding TCP {local} (`dns.listen`)")))
            }
        }
    }
    Err(last_error.unwrap_or_else(|| anyhow::anyhow!("dns: cannot bind {listen}")))
}

impl std::fmt::Debug for DnsServer {
    // hickory's `Server` has no Debug; the addresses are what identifies a responder.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsServer").field("local_addrs", &self.local_addrs).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
