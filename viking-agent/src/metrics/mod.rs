//! The agent's HTTP endpoint (`[metrics]`): `/metrics` in Prometheus text format,
//! `/healthz`, `/readyz` and `/status` (JSON, for `viking-agent status`).
//!
//! Counters live in the kernel maps and are read at scrape time, by this task, from its own
//! handles on the pinned maps. What the counters belong to (service names, frontends,
//! kernel ids) and whether the agent is ready come from the run loop, which answers a
//! [`Probe`] from memory: a scrape costs the loop a copy of its service list, never a map
//! read. The same question is the liveness check: `/healthz` fails when the loop does not
//! answer within a second.

mod render;
pub mod sources;
pub mod status;

use std::{convert::Infallible, net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode, body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::{
    net::TcpListener,
    sync::{Mutex, mpsc, oneshot},
};

use crate::{config::MetricsSettings, dataplane::tables::KernelTables, reconcile::ServiceView};

/// How long the run loop may take to answer before `/healthz` fails.
const LOOP_DEADLINE: Duration = Duration::from_secs(1);

/// What the endpoint asks the run loop.
#[derive(Debug)]
pub struct Probe {
    /// Services with series of their own, at most this many.
    pub max_services: usize,
    /// Where the answer goes.
    pub reply: oneshot::Sender<Inventory>,
}

/// The run loop's answer: what the kernel serves and whether the agent is ready.
#[derive(Debug, Default)]
pub struct Inventory {
    /// Installed services (the first `max_services` by frontend).
    pub services: Vec<ServiceView>,
    /// Every installed service, also those beyond `max_services`.
    pub service_count: usize,
    /// `SERVICES` entries in use and the map's limit.
    pub slots: (u64, u32),
    /// Distinct backends in use and the `BACKENDS` limit.
    pub backends: (usize, u32),
    /// Every configured source has reported once and the kernel holds what they say.
    pub sources_synced: bool,
    /// Docker has listed its containers (true when there is no Docker source).
    pub containers_listed: bool,
    /// Each configured source and whether it has reported.
    pub sources: Vec<status::SourceStatus>,
}

impl Inventory {
    /// Ready: the programs are attached (they are before the loop runs) and every source
    /// has been applied once.
    pub fn is_ready(&self) -> bool {
        self.sources_synced && self.containers_listed
    }
}

/// The bound listener and what it serves from.
#[derive(Debug)]
pub struct MetricsServer {
    listener: TcpListener,
    shared: Arc<Shared>,
}

/// What the endpoint serves besides the kernel's counters.
#[derive(Debug)]
pub struct EndpointContext {
    /// `[metrics]`.
    pub settings: MetricsSettings,
    /// Where the pins are, for `/status`.
    pub pins: crate::dataplane::pins::PinDir,
    /// What the programs are attached to, for `/status`.
    pub cgroup: std::path::PathBuf,
    /// The agent's own metrics.
    pub agent: sources::AgentMetrics,
    /// Whether the Consul and the Docker source run.
    pub consul: bool,
    /// See `consul`.
    pub docker: bool,
    /// Whether the DNS responder runs.
    pub dns: bool,
}

#[derive(Debug)]
struct Shared {
    context: EndpointContext,
    probes: mpsc::Sender<Probe>,
    /// Handles on the pinned maps; a scrape at a time reads them.
    tables: Mutex<KernelTables>,
}

impl MetricsServer {
    /// Binds `addr`; `tables` are this endpoint's own handles on the pinned maps.
    pub async fn bind(
        addr: SocketAddr,
        context: EndpointContext,
        tables: KernelTables,
        probes: mpsc::Sender<Probe>,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let shared = Shared { context, probes, tables: Mutex::new(tables) };
        Ok(Self { listener, shared: Arc::new(shared) })
    }

    /// Where it listens (the port, when `listen` asked for port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until the process ends.
    pub async fn run(self) {
        loop {
            let stream = match self.listener.accept().await {
                Ok((stream, _)) => stream,
                Err(err) => {
                    tracing::warn!("metrics endpoint: accept failed: {err}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let shared = Arc::clone(&self.shared);
            tokio::spawn(async move {
                let service = service_fn(move |request| respond(Arc::clone(&shared), request));
                if let Err(err) = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await {
                    tracing::debug!("metrics endpoint: connection ended: {err}");
                }
            });
        }
    }
}

async fn respond(shared: Arc<Shared>, request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = request.uri().path();
    let max_services = if path == "/metrics" { shared.context.settings.max_services as usize } else { 0 };
    let inventory = match path {
        "/metrics" | "/healthz" | "/readyz" | "/status" => ask(&shared.probes, max_services).await,
        _ => return Ok(text(StatusCode::NOT_FOUND, "not found: /metrics, /healthz, /readyz, /status\n".into())),
    };
    let Some(inventory) = inventory else {
        return Ok(text(StatusCode::SERVICE_UNAVAILABLE, "the agent's run loop does not answer\n".into()));
    };
    Ok(match path {
        "/healthz" => text(StatusCode::OK, "ok\n".into()),
        "/status" => {
            let status = status::Status {
                agent_version: Some(env!("CARGO_PKG_VERSION").to_owned()),
                layout: crate::dataplane::pinned_layout(&shared.context.pins).ok().flatten().map(|l| l.version),
                pin_dir: shared.context.pins.root().display().to_string(),
                cgroup: Some(shared.context.cgroup.display().to_string()),
                ready: Some(inventory.is_ready()),
                services: inventory.service_count,
                service_slots: Some(inventory.slots),
                backends: Some(inventory.backends),
                programs: status::programs(&shared.context.pins),
                sources: inventory.sources,
            };
            let body = serde_json::to_string_pretty(&status).unwrap_or_default();
            text(StatusCode::OK, body + "\n")
        }
        "/readyz" if inventory.is_ready() => text(StatusCode::OK, "ready\n".into()),
        "/readyz" => {
            let waiting = if inventory.sources_synced { "docker's container list" } else { "a source's first answer" };
            text(StatusCode::SERVICE_UNAVAILABLE, format!("not ready: waiting for {waiting}\n"))
        }
        _ => {
            let tables = shared.tables.lock().await;
            match render::render(&inventory, &tables, &shared.context) {
                Ok(body) => {
                    let mut response = text(StatusCode::OK, body);
                    response.headers_mut().insert(
                        hyper::header::CONTENT_TYPE,
                        hyper::header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                    );
                    response
                }
                Err(err) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("reading the kernel maps: {err}\n")),
            }
        }
    })
}

/// Asks the run loop, within [`LOOP_DEADLINE`].
async fn ask(probes: &mpsc::Sender<Probe>, max_services: usize) -> Option<Inventory> {
    let (reply, answer) = oneshot::channel();
    let asked = async {
        probes.send(Probe { max_services, reply }).await.ok()?;
        answer.await.ok()
    };
    tokio::time::timeout(LOOP_DEADLINE, asked).await.ok().flatten()
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
}
