//! The TCP side: binding (with `SO_REUSEADDR`, so a stopped server can bind
//! the same port again at once), the accept loop, and per-connection
//! protocol selection.
//!
//! Connections are tasks of a `JoinSet` owned by the accept loop, so aborting
//! the loop drops the listening socket *and* every open connection, the way a
//! Consul process exiting would.
//!
//! Plain connections speak HTTP/1.1 only, as Consul's HTTP port does (Go's
//! server offers HTTP/2 only over TLS). With TLS, the protocol is the one
//! negotiated by ALPN: HTTP/2 with at most 250 concurrent streams per
//! connection, Go's `http2.Server` default (`defaultMaxStreams`), or HTTP/1.1.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::Request;
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::{Service, service_fn};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

use crate::http::HttpResponse;
use crate::routes;
use crate::shared::Shared;
use crate::tls::ALPN_H2;

/// Pending connections the kernel queues before `accept`.
const BACKLOG: u32 = 1024;
/// Go's `http2.Server` default for `MaxConcurrentStreams`, which Consul keeps.
pub(crate) const MAX_CONCURRENT_STREAMS: u32 = 250;

/// Binds a listening socket on `addr`.
pub(crate) fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// Serves connections from `listener` until the returned task is aborted;
/// with `tls`, every connection must complete a TLS handshake first.
pub(crate) fn spawn(listener: TcpListener, shared: Arc<Shared>, tls: Option<TlsAcceptor>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        // As Consul's: Go's net package sets TCP_NODELAY on every
                        // connection, so a small answer right after another is not held
                        // back until the client acknowledges the first (Nagle's algorithm
                        // with delayed ACKs: up to 40 ms).
                        if let Err(err) = stream.set_nodelay(true) {
                            tracing::debug!(%err, "consul-test-server: TCP_NODELAY");
                        }
                        connections.spawn(serve_connection(stream, Arc::clone(&shared), tls.clone()));
                    }
                    Err(err) => {
                        // Usually out of file descriptors: back off instead of spinning.
                        tracing::warn!(%err, "consul-test-server: accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
    })
}

async fn serve_connection(stream: TcpStream, shared: Arc<Shared>, tls: Option<TlsAcceptor>) {
    let _open = shared.connections.enter();
    let Some(acceptor) = tls else {
        return serve_http1(stream, &shared).await;
    };
    let stream = match acceptor.accept(stream).await {
        Ok(stream) => stream,
        Err(err) => {
            tracing::debug!(%err, "consul-test-server: TLS handshake failed");
            return;
        }
    };
    if stream.get_ref().1.alpn_protocol() == Some(ALPN_H2) {
        serve_http2(stream, &shared).await;
    } else {
        serve_http1(stream, &shared).await;
    }
}

/// The request handler as a hyper service (owning its own `Arc`, hence `use<>`).
fn service(
    shared: &Arc<Shared>,
) -> impl Service<Request<Incoming>, Response = HttpResponse, Error = Infallible, Future: Send> + Clone + use<> {
    let shared = Arc::clone(shared);
    service_fn(move |request| {
        let shared = Arc::clone(&shared);
        async move { Ok::<_, Infallible>(routes::handle(&shared, request).await) }
    })
}

async fn serve_http1<S: AsyncRead + AsyncWrite + Unpin>(stream: S, shared: &Arc<Shared>) {
    if let Err(err) = http1::Builder::new().serve_connection(TokioIo::new(stream), service(shared)).await {
        tracing::debug!(%err, "consul-test-server: connection ended with an error");
    }
}

async fn serve_http2<S: AsyncRead + AsyncWrite + Unpin>(stream: S, shared: &Arc<Shared>) {
    // Dropped when this connection ends or its task is aborted, which ends
    // the stream tasks the executor spawned (see `StreamExecutor`).
    let (_connection_alive, alive) = watch::channel(());
    let mut builder = http2::Builder::new(StreamExecutor { alive });
    builder.max_concurrent_streams(MAX_CONCURRENT_STREAMS);
    if let Err(err) = builder.serve_connection(TokioIo::new(stream), service(shared)).await {
        tracing::debug!(%err, "consul-test-server: HTTP/2 connection ended with an error");
    }
}

/// Runs the HTTP/2 streams of one connection. hyper spawns every stream as
/// its own task; tying them to the connection keeps HTTP/1.1's semantics,
/// where a request in flight (a blocking query, a hung request) is dropped
/// with its connection, so [`crate::ConsulTestServer::stop`] ends it too.
#[derive(Debug, Clone)]
struct StreamExecutor {
    alive: watch::Receiver<()>,
}

impl<F> hyper::rt::Executor<F> for StreamExecutor
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, stream: F) {
        let mut alive = self.alive.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = stream => {}
                // Nothing is ever sent: this fires only when the sender drops.
                _ = alive.changed() => {}
            }
        });
    }
}
