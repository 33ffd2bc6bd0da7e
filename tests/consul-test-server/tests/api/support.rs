//! A small HTTP client for the tests.

use std::time::Duration;

use anyhow::{Context, Result};
use consul_test_server::{ConsulTestServer, Options};
use reqwest::header::HeaderMap;
use serde_json::Value;

/// Upper bound on any single request in these tests.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A started server and a client pointed at it.
pub async fn start() -> Result<(ConsulTestServer, Client)> {
    start_with(Options::default()).await
}

/// Same, with options; with TLS the client trusts the server's certificate.
pub async fn start_with(options: Options) -> Result<(ConsulTestServer, Client)> {
    let server = ConsulTestServer::start(options).await?;
    let client = match server.ca_pem() {
        Some(pem) => Client::with_ca(server.http_addr(), &pem)?,
        None => Client::new(server.http_addr())?,
    };
    Ok((server, client))
}

/// One HTTP answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub version: reqwest::Version,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    /// `X-Consul-Index`, parsed.
    pub fn index(&self) -> Option<u64> {
        self.headers.get("x-consul-index")?.to_str().ok()?.parse().ok()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Result<Value> {
        serde_json::from_slice(&self.body).with_context(|| format!("body is not JSON: {}", self.text()))
    }
}

#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    pub fn new(base: String) -> Result<Self> {
        Ok(Client { http: reqwest::Client::builder().timeout(REQUEST_TIMEOUT).build()?, base })
    }

    /// A client that trusts `pem` (and only it) as its root certificate.
    pub fn with_ca(base: String, pem: &str) -> Result<Self> {
        Self::from_builder(base, Self::trusting(pem)?)
    }

    /// A builder for a client that trusts only `pem`, to configure further.
    pub fn trusting(pem: &str) -> Result<reqwest::ClientBuilder> {
        let root = reqwest::Certificate::from_pem(pem.as_bytes())?;
        Ok(reqwest::Client::builder().use_rustls_tls().tls_built_in_root_certs(false).add_root_certificate(root))
    }

    /// A client from a configured builder, with the usual timeout.
    pub fn from_builder(base: String, builder: reqwest::ClientBuilder) -> Result<Self> {
        Ok(Client { http: builder.timeout(REQUEST_TIMEOUT).build()?, base })
    }

    /// The underlying client and base URL, for requests needing custom headers.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, format!("{}{path}", self.base))
    }

    pub async fn send(&self, builder: reqwest::RequestBuilder) -> Result<Reply> {
        let response = builder.send().await?;
        let status = response.status().as_u16();
        let version = response.version();
        let headers = response.headers().clone();
        let body = response.bytes().await?.to_vec();
        Ok(Reply { status, version, headers, body })
    }

    pub async fn get(&self, path: &str) -> Result<Reply> {
        self.send(self.request(reqwest::Method::GET, path)).await
    }

    pub async fn put(&self, path: &str, body: impl Into<reqwest::Body>) -> Result<Reply> {
        self.send(self.request(reqwest::Method::PUT, path).body(body)).await
    }

    pub async fn put_json(&self, path: &str, body: &Value) -> Result<Reply> {
        self.put(path, serde_json::to_vec(body)?).await
    }

    pub async fn delete(&self, path: &str) -> Result<Reply> {
        self.send(self.request(reqwest::Method::DELETE, path)).await
    }
}
