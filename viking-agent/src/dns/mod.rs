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

use std::{io, net::SocketAddr, sync::Arc, time::Duration};

use hickory_proto::ProtoError;
use hickory_server::{Server, net::NetError};
use prometheus_client::metrics::{counter::Counter, family::Family};
use tokio::{
    net::{TcpListener, UdpSocket},
    sync::watch,
};

use self::{answer::Zone, handler::Handler};
pub use self::{handler::answer_udp_message, table::NameTable};
use crate::{config::DnsSettings, metrics::sources::RcodeLabels};

/// A TCP client that sends no query for this long is disconnected, so idle connections
/// cannot pile up.
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Responses queued per TCP connection before the connection applies backpressure.
const TCP_RESPONSE_QUEUE: usize = 32;

/// Why the responder cannot start, or stopped.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// `dns.domain` does not make a zone.
    #[error("dns: `dns.domain` = {domain:?} is not a DNS name")]
    Domain {
        /// The domain.
        domain: String,
        /// What hickory found wrong.
        source: ProtoError,
    },
    /// A listen address cannot be bound for UDP.
    #[error("dns: binding UDP {listen} (`dns.listen`)")]
    BindUdp {
        /// The address.
        listen: SocketAddr,
        /// The socket error.
        source: io::Error,
    },
    /// The UDP socket's address cannot be read.
    #[error(transparent)]
    LocalAddr(io::Error),
    /// The UDP socket's address cannot be bound for TCP.
    #[error("dns: binding TCP {local} (`dns.listen`)")]
    BindTcp {
        /// The address.
        local: SocketAddr,
        /// The socket error.
        source: io::Error,
    },
    /// A socket failed for good while answering.
    #[error("dns: responder stopped")]
    Stopped(#[source] NetError),
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
    ) -> Result<Self, DnsError> {
        let zone = Zone::new(&settings.domain, settings.ttl)
            .map_err(|source| DnsError::Domain { domain: settings.domain.clone(), source })?;
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
    pub async fn run(mut self) -> Result<(), DnsError> {
        self.server.block_until_done().await.map_err(DnsError::Stopped)
    }
}

/// A UDP socket and a TCP listener on the same address. With port 0 the kernel picks the
/// UDP port, which TCP may already use (an ephemeral port of some connection): then the
/// pair is tried again on another port.
async fn bind_pair(listen: SocketAddr) -> Result<(UdpSocket, TcpListener, SocketAddr), DnsError> {
    const ATTEMPTS_ON_ANY_PORT: usize = 16;
    let attempts = if listen.port() == 0 { ATTEMPTS_ON_ANY_PORT } else { 1 };
    let mut attempt = 1;
    loop {
        let udp = UdpSocket::bind(listen).await.map_err(|source| DnsError::BindUdp { listen, source })?;
        let local = udp.local_addr().map_err(DnsError::LocalAddr)?;
        match TcpListener::bind(local).await {
            Ok(tcp) => return Ok((udp, tcp, local)),
            Err(source) if attempt == attempts => return Err(DnsError::BindTcp { local, source }),
            Err(_) => attempt += 1,
        }
    }
}

impl std::fmt::Debug for DnsServer {
    // hickory's `Server` has no Debug; the addresses are what identifies a responder.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsServer").field("local_addrs", &self.local_addrs).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
