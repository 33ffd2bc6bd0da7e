//! HTTP/2 GETs over a few shared TLS connections: how the Consul source reads over HTTPS,
//! its thousands of blocking queries above all.
//!
//! An outstanding request here is one HTTP/2 stream and its future, about 2 KiB. Through
//! the general request client it was about 9 KiB (a heap profile at 10,000 watches: the
//! pooled client's checkout, the redirect and retry layers that keep a copy of the
//! request), which made the agent's memory grow by that much per service.
//!
//! Connections open as streams fill them. A connection carries at most the concurrent
//! streams its server allows (`SETTINGS_MAX_CONCURRENT_STREAMS`: 250 on Consul, Go's
//! default), so `n` outstanding queries use `ceil(n / 250)` connections. A new connection
//! answers one small request (`/v1/status/leader`) before it takes streams, so the
//! server's settings are known by then. The first connection opens alone, to learn that
//! limit; after it, a request that finds every connection full and every connection being
//! opened spoken for opens another, so thousands of watches starting together open their
//! connections side by side. A connection that fails or is told to go away takes no new
//! streams and is dropped; its streams fail and their watches retry.

use std::{
    error::Error,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::{Bytes, BytesMut};
use h2::client::SendRequest;
use http::{HeaderMap, HeaderValue, Request, StatusCode};
use rustls::pki_types::ServerName;
use tokio::{net::TcpStream, sync::Notify};
use tokio_rustls::TlsConnector;

use super::{tls::ALPN_H2, watchers::DropAbort};

/// How much a stream may receive before it is read (HTTP/2's default is 64 KiB, which
/// would make a large listing wait for window updates).
const STREAM_WINDOW: u32 = 1 << 20;
/// The same for a whole connection.
const CONNECTION_WINDOW: u32 = 8 << 20;
/// The streams a connection is given before its server's settings arrive (RFC 9113
/// recommends servers allow at least 100).
const STREAMS_BEFORE_SETTINGS: usize = 100;

/// An answer, read in full.
#[derive(Debug)]
pub struct Response {
    /// The status.
    pub status: StatusCode,
    /// The headers (`X-Consul-Index`, `Retry-After`).
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
}

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The server does not speak HTTP/2 (ALPN chose HTTP/1.1): use the request client.
    #[error("the server does not offer HTTP/2")]
    NotHttp2,
    /// Connecting, TLS, or the HTTP/2 exchange failed.
    #[error(transparent)]
    Failed(Box<dyn Error + Send + Sync>),
}

impl StreamError {
    fn failed(error: impl Into<Box<dyn Error + Send + Sync>>) -> Self {
        Self::Failed(error.into())
    }
}

/// Where and how to connect.
pub struct Target {
    /// `host:port` to connect to.
    pub connect: String,
    /// The name the certificate must be valid for.
    pub server_name: ServerName<'static>,
    /// `host:port` as the requests name it (`:authority`).
    pub authority: String,
    /// The TLS configuration.
    pub tls: TlsConnector,
    /// How long connecting (TCP, TLS, HTTP/2 and the first answer) may take.
    pub connect_timeout: Duration,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The TLS configuration holds the client key; leave it out.
        f.debug_struct("Target")
            .field("connect", &self.connect)
            .field("authority", &self.authority)
            .finish_non_exhaustive()
    }
}

/// The connections to one server, opened as needed.
#[derive(Debug)]
pub struct Streams {
    target: Target,
    pool: std::sync::Mutex<Pool>,
    /// Wakes the requests waiting for a connection being opened.
    opened: Notify,
}

/// The open connections and those being opened.
#[derive(Debug, Default)]
struct Pool {
    connections: Vec<Connection>,
    /// Connections being opened.
    dialing: usize,
    /// Requests waiting for them.
    waiting: usize,
    /// The streams the server allows per connection, once a connection told.
    limit: Option<usize>,
}

/// What a request found in the pool.
enum Checkout {
    /// A stream on a connection with room.
    Stream(SendRequest<Bytes>, Lease),
    /// Wait for a connection being opened.
    Wait,
    /// Open a connection.
    Dial,
}

/// One HTTP/2 connection and how loaded it is.
#[derive(Debug)]
struct Connection {
    send: SendRequest<Bytes>,
    load: Arc<Load>,
    /// Drives the connection (reads frames, wakes streams) until dropped.
    _driver: DropAbort,
}

/// Streams in flight on a connection, and whether it may take more.
#[derive(Debug, Default)]
struct Load {
    open: AtomicUsize,
    closed: AtomicBool,
}

/// A request counted in [`Pool::dialing`] or [`Pool::waiting`] until dropped, also when
/// its task is cancelled; the end of a dial wakes the requests waiting for it.
struct Counted<'a> {
    streams: &'a Streams,
    dialing: bool,
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        let mut pool = self.streams.pool();
        if self.dialing {
            pool.dialing -= 1;
            drop(pool);
            self.streams.opened.notify_waiters();
        } else {
            pool.waiting -= 1;
        }
    }
}

/// A stream's place on its connection, given back when dropped.
struct Lease(Arc<Load>);

impl Drop for Lease {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Streams {
    /// No connection yet: the first request opens one.
    pub fn new(target: Target) -> Self {
        Self { target, pool: std::sync::Mutex::default(), opened: Notify::new() }
    }

    /// `GET path_and_query` with `headers`, its answer read in full.
    pub async fn get(&self, path_and_query: &str, headers: &[(&str, &HeaderValue)]) -> Result<Response, StreamError> {
        let request = self.request(path_and_query, headers)?;
        let (send, lease) = self.checkout().await?;
        exchange(send, request, &lease.0).await
    }

    fn request(&self, path_and_query: &str, headers: &[(&str, &HeaderValue)]) -> Result<Request<()>, StreamError> {
        let mut request = Request::get(format!("https://{}{path_and_query}", self.target.authority));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.body(()).map_err(StreamError::failed)
    }

    /// A stream on a connection with room, waiting for or opening a connection when all
    /// are full.
    async fn checkout(&self) -> Result<(SendRequest<Bytes>, Lease), StreamError> {
        loop {
            let opened = self.opened.notified();
            let found = self.pool().checkout();
            match found {
                Checkout::Stream(send, lease) => return Ok((send, lease)),
                Checkout::Wait => {
                    let _waiting = Counted { streams: self, dialing: false };
                    opened.await;
                }
                Checkout::Dial => {
                    let dialing = Counted { streams: self, dialing: true };
                    // Boxed: connecting (TCP, TLS, HTTP/2) is a future of about 4 KiB that
                    // would otherwise be part of every request's future, and so of every
                    // idle watch task, for a step taken once per connection.
                    let dial = Box::pin(self.dial());
                    let dialed = tokio::time::timeout(self.target.connect_timeout, dial).await.unwrap_or_else(|_| {
                        Err(StreamError::failed(format!("connecting to {}: timed out", self.target.connect)))
                    });
                    let stream = dialed.map(|connection| self.pool().add(connection));
                    drop(dialing);
                    if let Some(stream) = stream? {
                        return Ok(stream);
                    }
                }
            }
        }
    }

    fn pool(&self) -> std::sync::MutexGuard<'_, Pool> {
        // A panic while holding the lock cannot leave the pool inconsistent: keep using it.
        self.pool.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Opens a connection and waits for its first answer (and so the server's settings).
    async fn dial(&self) -> Result<Connection, StreamError> {
        let target = &self.target;
        let tcp = TcpStream::connect(&target.connect).await.map_err(StreamError::failed)?;
        tcp.set_nodelay(true).map_err(StreamError::failed)?;
        let tls = target.tls.connect(target.server_name.clone(), tcp).await.map_err(StreamError::failed)?;
        if tls.get_ref().1.alpn_protocol() != Some(ALPN_H2) {
            return Err(StreamError::NotHttp2);
        }
        let (send, connection) = h2::client::Builder::new()
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .initial_max_send_streams(STREAMS_BEFORE_SETTINGS)
            .handshake::<_, Bytes>(tls)
            .await
            .map_err(StreamError::failed)?;
        let load = Arc::new(Load::default());
        let driver = {
            let (load, server) = (Arc::clone(&load), target.connect.clone());
            DropAbort::spawn(async move {
                if let Err(err) = connection.await {
                    tracing::debug!("consul: HTTP/2 connection to {server} ended: {err}");
                }
                load.closed.store(true, Ordering::Relaxed);
            })
        };
        let connection = Connection { send, load, _driver: driver };
        let first = self.request("/v1/status/leader", &[])?;
        exchange(connection.send.clone(), first, &connection.load).await?;
        Ok(connection)
    }
}

impl Pool {
    /// A stream where there is room; else whether to wait for a connection being opened
    /// (the first one, or one with room left for this request) or to open one.
    fn checkout(&mut self) -> Checkout {
        self.connections.retain(|c| !c.load.closed.load(Ordering::Relaxed));
        if let Some(connection) = self.connections.iter().find(|c| c.has_room()) {
            return Checkout::Stream(connection.send.clone(), connection.lease());
        }
        let spoken_for = match self.limit {
            None => self.dialing > 0,
            Some(limit) => self.waiting < self.dialing * limit,
        };
        if spoken_for {
            self.waiting += 1;
            Checkout::Wait
        } else {
            self.dialing += 1;
            Checkout::Dial
        }
    }

    /// Adds a new connection, with a stream on it for the request that opened it (`None`
    /// when the waiting requests took all its room).
    fn add(&mut self, connection: Connection) -> Option<(SendRequest<Bytes>, Lease)> {
        self.limit = Some(connection.send.current_max_send_streams());
        let stream = connection.has_room().then(|| (connection.send.clone(), connection.lease()));
        self.connections.push(connection);
        stream
    }
}

impl Connection {
    fn has_room(&self) -> bool {
        self.load.open.load(Ordering::Relaxed) < self.send.current_max_send_streams()
    }

    fn lease(&self) -> Lease {
        self.load.open.fetch_add(1, Ordering::Relaxed);
        Lease(Arc::clone(&self.load))
    }
}

/// Sends `request` on a stream of a connection (`load`) and reads the answer; a
/// connection that cannot take the stream takes no more.
async fn exchange(send: SendRequest<Bytes>, request: Request<()>, load: &Load) -> Result<Response, StreamError> {
    let sent = async {
        let mut send = send.ready().await?;
        let (response, _) = send.send_request(request, true)?;
        Ok::<_, h2::Error>(response)
    };
    let response = match sent.await {
        Ok(response) => response,
        Err(err) => {
            load.closed.store(true, Ordering::Relaxed);
            return Err(StreamError::failed(err));
        }
    };
    let (parts, mut body) = response.await.map_err(StreamError::failed)?.into_parts();
    let mut bytes = BytesMut::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(StreamError::failed)?;
        // Reading the data makes room for more of it.
        let _ = body.flow_control().release_capacity(chunk.len());
        bytes.extend_from_slice(&chunk);
    }
    Ok(Response { status: parts.status, headers: parts.headers, body: bytes.freeze() })
}
