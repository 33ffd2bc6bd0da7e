//! A small Consul HTTP client: blocking reads with `index`/`wait`, KV writes with `cas`,
//! transactions. It follows developer.hashicorp.com/consul/api-docs/features/blocking,
//! /api-docs/txn and /api-docs/api-structure (`X-Consul-Token`, `X-Consul-Index`, `?dc=`,
//! `?stale`).
//!
//! Over HTTPS, reads go over HTTP/2 streams (`streams`): Consul's HTTPS API speaks HTTP/2,
//! so thousands of blocking queries share a few connections, at about 2 KiB each. Writes,
//! plain HTTP (HTTP/1.1 only, as Consul's HTTP port is), and an HTTPS server that offers
//! no HTTP/2 (a proxy in front of Consul) use the request client.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use reqwest::StatusCode;
use serde::de::DeserializeOwned;

use super::{
    streams::{StreamError, Streams, Target},
    tls,
    wire::{TxnOp, TxnResponse},
};
use crate::config::ConsulSettings;

/// How long connecting to Consul may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A read's result and the index to block on next.
#[derive(Debug)]
pub struct Indexed<T> {
    /// `X-Consul-Index` of the response.
    pub index: u64,
    /// The body; `None` for a 404 (e.g. a KV prefix with no key yet).
    pub body: Option<T>,
}

/// What can go wrong talking to Consul.
#[derive(Debug, thiserror::Error)]
pub enum ConsulError {
    /// Connection refused, reset, timed out, TLS failure...
    #[error("{url}: {source}")]
    Transport {
        /// What was requested.
        url: String,
        /// The transport error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Consul answered 429: it asks clients to back off.
    #[error("{url}: 429 Too Many Requests")]
    TooManyRequests {
        /// What was requested.
        url: String,
        /// `Retry-After`, when given.
        retry_after: Option<Duration>,
    },
    /// Any other non-success status (403 for a bad token, 500...).
    #[error("{url}: {status}: {body}")]
    Status {
        /// What was requested.
        url: String,
        /// The status.
        status: StatusCode,
        /// Consul's message.
        body: String,
    },
    /// The body is not what the API documents.
    #[error("{url}: unexpected response: {detail}")]
    Decode {
        /// What was requested.
        url: String,
        /// The parse error.
        detail: String,
    },
    /// The client could not be built (bad certificate file...).
    #[error("consul client: {0}")]
    Setup(String),
}

/// Talks to one Consul agent or server. Clones share the connections.
#[derive(Clone, Debug)]
pub struct ConsulClient(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    http: reqwest::Client,
    /// HTTP/2 streams for reads, over HTTPS.
    streams: Option<Streams>,
    /// Set when the server turned out not to offer HTTP/2: reads use `http` too.
    http1_only: AtomicBool,
    base: String,
    token: Option<HeaderValue>,
    datacenter: Option<String>,
    stale: bool,
    wait: Duration,
    /// A request's whole time, answer included.
    timeout: Duration,
    /// Set once the request client's first connection was opened ([`ConsulClient::connected`]).
    connected: tokio::sync::OnceCell<()>,
}

/// An answer from either transport, read in full.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl ConsulClient {
    /// A client for `settings` (TLS from the CA and client certificate files).
    pub fn new(settings: &ConsulSettings) -> Result<Self, ConsulError> {
        let wait = settings.wait;
        // Consul adds up to wait/16 of jitter; allow that plus network slack.
        let timeout = wait + wait / 16 + Duration::from_secs(10);
        let tls = tls::client_config(settings)?;
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(CONNECT_TIMEOUT)
            .use_preconfigured_tls(tls.clone());
        let mut base = settings.url.clone();
        let authority = base.split("://").nth(1).unwrap_or_default().to_owned();
        let mut connect = with_port(&authority);
        if let Some(name) = &settings.tls_server_name {
            // Verify the certificate against `name` while connecting to the configured
            // address: request `https://name:port` and resolve `name` to that address.
            let addr: SocketAddr = authority.parse().map_err(|_| {
                ConsulError::Setup(format!("consul.tls_server_name needs an ip:port address, not {authority:?}"))
            })?;
            builder = builder.resolve(name, addr);
            base = format!("https://{name}:{}", addr.port());
            connect = addr.to_string();
        }
        let http = builder.build().map_err(|e| ConsulError::Setup(e.to_string()))?;
        let streams = match base.strip_prefix("https://") {
            Some(authority) => Some(Streams::new(Target {
                connect,
                server_name: server_name(authority)?,
                authority: authority.to_owned(),
                tls: tokio_rustls::TlsConnector::from(Arc::new(tls)),
                connect_timeout: CONNECT_TIMEOUT,
            })),
            None => None,
        };
        let token = match &settings.token {
            Some(token) => Some(
                HeaderValue::from_str(token)
                    .map_err(|_| ConsulError::Setup("consul.token: not a valid HTTP header value".into()))?,
            ),
            None => None,
        };
        Ok(Self(Arc::new(Inner {
            http,
            streams,
            http1_only: AtomicBool::new(false),
            base,
            token,
            datacenter: settings.datacenter.clone(),
            stale: settings.stale,
            wait,
            timeout,
            connected: tokio::sync::OnceCell::new(),
        })))
    }

    /// The wait blocking queries ask for.
    pub fn wait(&self) -> Duration {
        self.0.wait
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut request = self.0.http.request(method, format!("{}{path}", self.0.base));
        if let Some(token) = &self.0.token {
            request = request.header("X-Consul-Token", token);
        }
        if let Some(dc) = &self.0.datacenter {
            request = request.query(&[("dc", dc)]);
        }
        request
    }

    /// `GET path`, decoded; with `index`, a blocking query that returns when the result
    /// changes or after the configured wait.
    pub async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
        index: Option<u64>,
    ) -> Result<Indexed<T>, ConsulError> {
        let Indexed { index, body } = self.get_bytes(path, query, index).await?;
        let Some(bytes) = body else { return Ok(Indexed { index, body: None }) };
        let body =
            decode(&bytes).map_err(|detail| ConsulError::Decode { url: format!("{}{path}", self.0.base), detail })?;
        Ok(Indexed { index, body: Some(body) })
    }

    /// `GET path` as raw bytes (a watch compares them before decoding a large answer).
    pub async fn get_bytes(
        &self,
        path: &str,
        query: &[(&str, &str)],
        index: Option<u64>,
    ) -> Result<Indexed<Bytes>, ConsulError> {
        let url = format!("{}{path}", self.0.base);
        let path_and_query = self.path_and_query(path, query, index);
        let answer =
            self.read(&path_and_query).await.map_err(|source| ConsulError::Transport { url: url.clone(), source })?;
        let index = answer
            .headers
            .get("X-Consul-Index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        match answer.status {
            StatusCode::NOT_FOUND => Ok(Indexed { index, body: None }),
            status if status.is_success() => Ok(Indexed { index, body: Some(answer.body) }),
            _ => Err(failure(url, answer)),
        }
    }

    /// `path?query` with the client's `dc` and `stale`, and a blocking query's `index`
    /// and `wait`.
    fn path_and_query(&self, path: &str, query: &[(&str, &str)], index: Option<u64>) -> String {
        let mut pairs = form_urlencoded::Serializer::new(String::new());
        pairs.extend_pairs(query);
        if let Some(dc) = &self.0.datacenter {
            pairs.append_pair("dc", dc);
        }
        if self.0.stale {
            pairs.append_pair("stale", "");
        }
        if let Some(index) = index {
            pairs.append_pair("index", &index.to_string());
            pairs.append_pair("wait", &format!("{}s", self.0.wait.as_secs()));
        }
        let query = pairs.finish();
        if query.is_empty() { path.to_owned() } else { format!("{path}?{query}") }
    }

    /// Sends a GET over HTTP/2 streams when the server offers them, else over the request
    /// client.
    async fn read(&self, path_and_query: &str) -> Result<Answer, Box<dyn std::error::Error + Send + Sync>> {
        if let Some(streams) = &self.0.streams
            && !self.0.http1_only.load(Ordering::Relaxed)
        {
            let token = self.0.token.as_ref().map(|token| ("X-Consul-Token", token));
            let answer = tokio::time::timeout(self.0.timeout, streams.get(path_and_query, token.as_slice())).await;
            match answer {
                Ok(Ok(response)) => {
                    return Ok(Answer { status: response.status, headers: response.headers, body: response.body });
                }
                Ok(Err(StreamError::NotHttp2)) => {
                    if !self.0.http1_only.swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            "consul: {} does not offer HTTP/2; every blocking query needs its own connection",
                            self.0.base
                        );
                    }
                }
                Ok(Err(StreamError::Failed(err))) => return Err(err),
                Err(_) => return Err("timed out".into()),
            }
        }
        // Boxed: every watch's future would otherwise be as large as this path's (the
        // request client's response and body), which HTTPS reads do not take.
        Box::pin(self.read_http1(path_and_query)).await
    }

    /// Sends a GET over the request client.
    async fn read_http1(&self, path_and_query: &str) -> Result<Answer, Box<dyn std::error::Error + Send + Sync>> {
        self.connected().await;
        let response = self.0.http.get(format!("{}{path_and_query}", self.0.base));
        let response = match &self.0.token {
            Some(token) => response.header("X-Consul-Token", token),
            None => response,
        };
        Ok(answer(response.send().await?).await?)
    }

    /// Before the request client's first request, opens its connection with one small
    /// request (`/v1/status/leader`), which the requests waiting meanwhile then share: over
    /// HTTPS, requests that start before a connection has negotiated HTTP/2 each open
    /// their own. Errors are left to the requests that follow.
    async fn connected(&self) {
        self.0
            .connected
            .get_or_init(|| async {
                let _ = self.request(reqwest::Method::GET, "/v1/status/leader").send().await;
            })
            .await;
    }

    /// `PUT /v1/txn`: applies every operation or none. A rollback (409) is an answer,
    /// not an error: its `errors` name the operations that failed.
    pub async fn txn(&self, ops: &[TxnOp]) -> Result<TxnResponse, ConsulError> {
        let url = format!("{}/v1/txn", self.0.base);
        let answer = self.send(&url, self.request(reqwest::Method::PUT, "/v1/txn").json(ops)).await?;
        if !answer.status.is_success() && answer.status != StatusCode::CONFLICT {
            return Err(failure(url, answer));
        }
        decode(&answer.body).map_err(|detail| ConsulError::Decode { url, detail })
    }

    /// `PUT /v1/kv/<key>?cas=<index>`: writes only if the key's ModifyIndex is `cas`
    /// (0: only if the key does not exist). Returns whether it was written.
    pub async fn kv_put_cas(&self, key: &str, value: &str, cas: u64) -> Result<bool, ConsulError> {
        let path = format!("/v1/kv/{key}");
        let request =
            self.request(reqwest::Method::PUT, &path).query(&[("cas", cas.to_string())]).body(value.to_owned());
        self.boolean(path, request).await
    }

    /// `DELETE /v1/kv/<key>?cas=<index>`: deletes only if unchanged since `cas`.
    pub async fn kv_delete_cas(&self, key: &str, cas: u64) -> Result<bool, ConsulError> {
        let path = format!("/v1/kv/{key}");
        let request = self.request(reqwest::Method::DELETE, &path).query(&[("cas", cas.to_string())]);
        self.boolean(path, request).await
    }

    /// Sends a KV write and reads its `true`/`false` body.
    async fn boolean(&self, path: String, request: reqwest::RequestBuilder) -> Result<bool, ConsulError> {
        let url = format!("{}{path}", self.0.base);
        let answer = self.send(&url, request).await?;
        if !answer.status.is_success() {
            return Err(failure(url, answer));
        }
        match String::from_utf8_lossy(&answer.body).trim() {
            "true" => Ok(true),
            "false" => Ok(false),
            other => Err(ConsulError::Decode { url, detail: format!("expected true or false, got {other:?}") }),
        }
    }

    /// Sends a write over the request client and reads its answer.
    async fn send(&self, url: &str, request: reqwest::RequestBuilder) -> Result<Answer, ConsulError> {
        self.connected().await;
        let transport = |source: reqwest::Error| ConsulError::Transport { url: url.to_owned(), source: source.into() };
        answer(request.send().await.map_err(transport)?).await.map_err(transport)
    }
}

/// Reads a request client response in full.
async fn answer(response: reqwest::Response) -> Result<Answer, reqwest::Error> {
    let (status, headers) = (response.status(), response.headers().clone());
    Ok(Answer { status, headers, body: response.bytes().await? })
}

/// The error for an answer that is not a success: 429 asks to back off.
fn failure(url: String, answer: Answer) -> ConsulError {
    let status = answer.status;
    if status == StatusCode::TOO_MANY_REQUESTS {
        let retry_after = answer
            .headers
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .map(Duration::from_secs);
        return ConsulError::TooManyRequests { url, retry_after };
    }
    let body = String::from_utf8_lossy(&answer.body).trim().chars().take(200).collect();
    ConsulError::Status { url, status, body }
}

/// `authority` with HTTPS's port when it names none.
fn with_port(authority: &str) -> String {
    match authority.rsplit_once(':') {
        Some((_, port)) if !port.is_empty() && port.chars().all(|c| c.is_ascii_digit()) => authority.to_owned(),
        _ => format!("{authority}:443"),
    }
}

/// The TLS name of `authority` (`host:port`, `[v6]:port`).
fn server_name(authority: &str) -> Result<rustls::pki_types::ServerName<'static>, ConsulError> {
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
        _ => authority,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    rustls::pki_types::ServerName::try_from(host.to_owned())
        .map_err(|_| ConsulError::Setup(format!("consul.address: {host:?} is not a host name or address")))
}

/// Decodes a JSON body; the error says where it is not what the API documents.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    serde_json::from_slice(bytes).map_err(|e| e.to_string())
}
