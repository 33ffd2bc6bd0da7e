//! A small Consul HTTP client: blocking reads with `index`/`wait`, KV writes with `cas`,
//! transactions. It follows developer.hashicorp.com/consul/api-docs/features/blocking,
//! /api-docs/txn and /api-docs/api-structure (`X-Consul-Token`, `X-Consul-Index`, `?dc=`,
//! `?stale`). Over HTTPS it speaks HTTP/2 when Consul offers it (Consul's HTTPS API does),
//! so the requests of one client share one TCP connection.

use std::{net::SocketAddr, time::Duration};

use bytes::Bytes;
use reqwest::StatusCode;
use serde::de::DeserializeOwned;

use super::wire::{TxnOp, TxnResponse};
use crate::config::ConsulSettings;

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
        source: reqwest::Error,
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

/// Talks to one Consul agent or server.
#[derive(Clone, Debug)]
pub struct ConsulClient {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
    datacenter: Option<String>,
    stale: bool,
    wait: Duration,
    /// Set once the first connection was opened ([`ConsulClient::connected`]).
    connected: std::sync::Arc<tokio::sync::OnceCell<()>>,
}

impl ConsulClient {
    /// A client for `settings` (TLS from the CA and client certificate files).
    pub fn new(settings: &ConsulSettings) -> Result<Self, ConsulError> {
        let wait = settings.wait;
        // Consul adds up to wait/16 of jitter; allow that plus network slack.
        let timeout = wait + wait / 16 + Duration::from_secs(10);
        let mut builder = reqwest::Client::builder().timeout(timeout).connect_timeout(Duration::from_secs(5));
        let mut base = settings.url.clone();
        if let Some(ca) = &settings.ca_cert {
            let pem =
                std::fs::read(ca).map_err(|e| ConsulError::Setup(format!("consul.ca_cert {}: {e}", ca.display())))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| ConsulError::Setup(format!("consul.ca_cert {}: {e}", ca.display())))?;
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        if let Some((cert, key)) = &settings.client_identity {
            let mut pem = std::fs::read(cert)
                .map_err(|e| ConsulError::Setup(format!("consul.client_cert {}: {e}", cert.display())))?;
            pem.extend(
                std::fs::read(key)
                    .map_err(|e| ConsulError::Setup(format!("consul.client_key {}: {e}", key.display())))?,
            );
            let identity = reqwest::Identity::from_pem(&pem)
                .map_err(|e| ConsulError::Setup(format!("consul client identity: {e}")))?;
            builder = builder.identity(identity);
        }
        if let Some(name) = &settings.tls_server_name {
            // Verify the certificate against `name` while connecting to the configured
            // address: request `https://name:port` and resolve `name` to that address.
            let authority = base.split("://").nth(1).unwrap_or_default().to_owned();
            let addr: SocketAddr = authority.parse().map_err(|_| {
                ConsulError::Setup(format!("consul.tls_server_name needs an ip:port address, not {authority:?}"))
            })?;
            builder = builder.resolve(name, addr);
            base = format!("https://{name}:{}", addr.port());
        }
        let http = builder.build().map_err(|e| ConsulError::Setup(e.to_string()))?;
        Ok(Self {
            http,
            base,
            token: settings.token.clone(),
            datacenter: settings.datacenter.clone(),
            stale: settings.stale,
            wait,
            connected: std::sync::Arc::default(),
        })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.header("X-Consul-Token", token);
        }
        if let Some(dc) = &self.datacenter {
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
            decode(&bytes).map_err(|detail| ConsulError::Decode { url: format!("{}{path}", self.base), detail })?;
        Ok(Indexed { index, body: Some(body) })
    }

    /// `GET path` as raw bytes (a watch compares them before decoding a large answer).
    pub async fn get_bytes(
        &self,
        path: &str,
        query: &[(&str, &str)],
        index: Option<u64>,
    ) -> Result<Indexed<Bytes>, ConsulError> {
        self.connected().await;
        let url = format!("{}{path}", self.base);
        let mut request = self.request(reqwest::Method::GET, path).query(query);
        if self.stale {
            request = request.query(&[("stale", "")]);
        }
        if let Some(index) = index {
            request = request.query(&[("index", index.to_string()), ("wait", format!("{}s", self.wait.as_secs()))]);
        }
        let response = request.send().await.map_err(|source| ConsulError::Transport { url: url.clone(), source })?;
        let index = response
            .headers()
            .get("X-Consul-Index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        match response.status() {
            StatusCode::NOT_FOUND => return Ok(Indexed { index, body: None }),
            status if status.is_success() => {}
            _ => return Err(Self::failure(url, response).await),
        }
        let bytes = response.bytes().await.map_err(|source| ConsulError::Transport { url, source })?;
        Ok(Indexed { index, body: Some(bytes) })
    }

    /// Before this client's first request, opens its connection with one small request
    /// (`/v1/status/leader`), which the requests waiting meanwhile then share: over HTTPS,
    /// requests that start before a connection has negotiated HTTP/2 each open their own
    /// (hundreds of watches starting together would open hundreds). Errors are left to the
    /// requests that follow.
    async fn connected(&self) {
        self.connected
            .get_or_init(|| async {
                let _ = self.request(reqwest::Method::GET, "/v1/status/leader").send().await;
            })
            .await;
    }

    /// `PUT /v1/txn`: applies every operation or none. A rollback (409) is an answer,
    /// not an error: its `errors` name the operations that failed.
    pub async fn txn(&self, ops: &[TxnOp]) -> Result<TxnResponse, ConsulError> {
        self.connected().await;
        let path = "/v1/txn";
        let url = format!("{}{path}", self.base);
        let request = self.request(reqwest::Method::PUT, path).json(ops);
        let response = request.send().await.map_err(|source| ConsulError::Transport { url: url.clone(), source })?;
        let status = response.status();
        if !status.is_success() && status != StatusCode::CONFLICT {
            return Err(Self::failure(url, response).await);
        }
        let bytes = response.bytes().await.map_err(|source| ConsulError::Transport { url: url.clone(), source })?;
        decode(&bytes).map_err(|detail| ConsulError::Decode { url, detail })
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
        self.connected().await;
        let url = format!("{}{path}", self.base);
        let response = request.send().await.map_err(|source| ConsulError::Transport { url: url.clone(), source })?;
        if !response.status().is_success() {
            return Err(Self::failure(url, response).await);
        }
        let text = response.text().await.map_err(|source| ConsulError::Transport { url: url.clone(), source })?;
        match text.trim() {
            "true" => Ok(true),
            "false" => Ok(false),
            other => Err(ConsulError::Decode { url, detail: format!("expected true or false, got {other:?}") }),
        }
    }

    async fn failure(url: String, response: reqwest::Response) -> ConsulError {
        let status = response.status();
        if status == StatusCode::TOO_MANY_REQUESTS {
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .map(Duration::from_secs);
            return ConsulError::TooManyRequests { url, retry_after };
        }
        let body = response.text().await.unwrap_or_default().trim().chars().take(200).collect();
        ConsulError::Status { url, status, body }
    }
}

/// Decodes a JSON body; the error says where it is not what the API documents.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    serde_json::from_slice(bytes).map_err(|e| e.to_string())
}
