//! The public handle: start, seed and inspect the server, flip faults, and
//! stop and restart it on the same port.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::task::JoinHandle;

use crate::acl::Acl;
use crate::faults::FaultSwitch;
use crate::identity::Identity;
use crate::listener;
use crate::registration::Registration;
use crate::request_log::RequestRecord;
use crate::shared::Shared;
use crate::state::{CatalogError, KvDelete};
use crate::tls::Tls;
use crate::wire::{DeregisterRequest, Status};

/// How to start the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Where to listen; the default `127.0.0.1:0` picks a free port.
    pub listen: SocketAddr,
    /// The datacenter name (default `dc1`); `?dc=` naming another one fails
    /// with `No path to datacenter`.
    pub datacenter: String,
    /// ACL tokens; `None` disables ACLs.
    pub acl: Option<Acl>,
    /// Serve HTTPS (HTTP/2 by ALPN, or HTTP/1.1) with a self-signed
    /// certificate generated at start; see [`ConsulTestServer::ca_pem`].
    pub tls: bool,
    /// With `tls`, offer HTTP/2 by ALPN (default), as Consul does; off, offer
    /// HTTP/1.1 only, as a TLS-terminating proxy in front of Consul may.
    pub http2: bool,
    /// The local agent's node name (`/v1/agent/self`, and the catalog node
    /// registered in dev mode).
    pub node_name: String,
    /// Behave like `consul agent -dev`: the server's own node is in the
    /// catalog from the start, with its `serfHealth` check passing and the
    /// `consul` service, and `/v1/agent/self` says `DevMode`. Off, the
    /// catalog starts empty.
    pub dev_mode: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            datacenter: "dc1".to_owned(),
            acl: None,
            tls: false,
            http2: true,
            node_name: "consul-test-server".to_owned(),
            dev_mode: false,
        }
    }
}

/// A KV entry as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvEntry {
    /// The key.
    pub key: String,
    /// The raw value.
    pub value: Vec<u8>,
    /// The opaque flags.
    pub flags: u64,
    /// Index that created the key.
    pub create_index: u64,
    /// Index that last modified the key.
    pub modify_index: u64,
}

/// A running Consul HTTP API test server.
#[derive(Debug)]
pub struct ConsulTestServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    /// Kept across [`ConsulTestServer::stop`], so a restart presents the
    /// same certificate.
    tls: Option<Tls>,
    accept_loop: Mutex<Option<JoinHandle<()>>>,
}

impl ConsulTestServer {
    /// Binds `options.listen` and starts serving. Must run inside a tokio runtime.
    pub async fn start(options: Options) -> io::Result<Self> {
        let tls = options.tls.then(|| Tls::generate(options.http2)).transpose().map_err(io::Error::other)?;
        let identity = Identity::new(options.node_name, options.dev_mode);
        let shared = Arc::new(Shared::new(options.datacenter, options.acl, identity));
        if shared.identity.dev_mode {
            let registration = shared.identity.self_registration(&shared.datacenter);
            shared.write(|store, touched| store.register(registration, touched)).map_err(io::Error::other)?;
        }
        let tcp = listener::bind(options.listen)?;
        let addr = tcp.local_addr()?;
        let accept_loop = listener::spawn(tcp, Arc::clone(&shared), tls.as_ref().map(|tls| tls.acceptor.clone()));
        Ok(ConsulTestServer { shared, addr, tls, accept_loop: Mutex::new(Some(accept_loop)) })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL, e.g. `http://127.0.0.1:43127`, or `https://…` with TLS.
    pub fn http_addr(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// With TLS, the server's self-signed certificate in PEM: the one
    /// certificate a client must trust (valid for `127.0.0.1`, `::1` and
    /// `localhost`). `None` without TLS.
    pub fn ca_pem(&self) -> Option<String> {
        self.tls.as_ref().map(|tls| tls.cert_pem.clone())
    }

    /// The local agent's node name.
    pub fn node_name(&self) -> &str {
        &self.shared.identity.node_name
    }

    /// TCP connections currently open to the server (an HTTP/2 connection
    /// counts once, however many requests it carries).
    pub fn open_connections(&self) -> usize {
        self.shared.connections.get()
    }

    /// Blocking queries (reads with `?index=`) currently waiting for a
    /// change or their timeout.
    pub fn open_blocking_queries(&self) -> usize {
        self.shared.blocking_queries.get()
    }

    /// Registers (or updates) a service instance; returns the write's index.
    pub fn register(&self, registration: Registration) -> Result<u64, CatalogError> {
        self.shared.write(|store, touched| store.register(registration.into_request(), touched))
    }

    /// Registers many instances under one lock and one round of wake-ups,
    /// for seeding thousands of services quickly. Stops at the first error;
    /// returns the index of the last write.
    pub fn register_many(&self, registrations: impl IntoIterator<Item = Registration>) -> Result<u64, CatalogError> {
        self.shared.write(|store, touched| {
            registrations
                .into_iter()
                .try_fold(store.raft_index(), |_, registration| store.register(registration.into_request(), touched))
        })
    }

    /// Removes one service instance and its checks.
    pub fn deregister_service(&self, node: &str, service_id: &str) -> Result<u64, CatalogError> {
        self.deregister(DeregisterRequest {
            node: node.to_owned(),
            service_id: service_id.to_owned(),
            ..DeregisterRequest::default()
        })
    }

    /// Removes a node with all its services and checks.
    pub fn deregister_node(&self, node: &str) -> Result<u64, CatalogError> {
        self.deregister(DeregisterRequest { node: node.to_owned(), ..DeregisterRequest::default() })
    }

    fn deregister(&self, request: DeregisterRequest) -> Result<u64, CatalogError> {
        self.shared.write(|store, touched| store.deregister(&request, touched))
    }

    /// Sets the status of every check with this ID (on any node), keeping
    /// its output. Returns how many checks have the ID.
    pub fn set_check_status(&self, check_id: &str, status: Status) -> usize {
        self.shared.write(|store, touched| store.update_check(check_id, status, None, touched))
    }

    /// Sets status and output of every check with this ID.
    pub fn set_check(&self, check_id: &str, status: Status, output: &str) -> usize {
        self.shared.write(|store, touched| store.update_check(check_id, status, Some(output), touched))
    }

    /// Writes a KV value; returns its `ModifyIndex`, which stays as it was
    /// when the value is unchanged, as in Consul.
    pub fn kv_put(&self, key: &str, value: impl Into<Vec<u8>>) -> u64 {
        self.shared.write(|store, touched| {
            store.kv_put(key, value.into(), 0, None, touched);
            store.kv_key_index(key)
        })
    }

    /// Reads a KV entry.
    pub fn kv_get(&self, key: &str) -> Option<KvEntry> {
        self.shared.read().kv_get(key).map(|record| KvEntry {
            key: key.to_owned(),
            value: record.value.clone(),
            flags: record.flags,
            create_index: record.create_index,
            modify_index: record.modify_index,
        })
    }

    /// Deletes a KV key; true if it existed.
    pub fn kv_delete(&self, key: &str) -> bool {
        self.shared.write(|store, touched| {
            let existed = store.kv_get(key).is_some();
            store.kv_delete(key, KvDelete::Key, touched);
            existed
        })
    }

    /// The index of the latest write.
    pub fn index(&self) -> u64 {
        self.shared.read().raft_index()
    }

    /// Moves the index backwards, as a Consul snapshot restore does: every
    /// stored index above `index` becomes `index`, later writes continue from
    /// `index + 1`, and blocking queries in flight return at once with the
    /// lower index. An `index` of 0 counts as 1: Consul never reports 0.
    pub fn reset_index_to(&self, index: u64) {
        self.shared.reset_index_to(index);
    }

    /// The fault switches.
    pub fn faults(&self) -> &FaultSwitch {
        &self.shared.faults
    }

    /// Every request received so far (newest last).
    pub fn request_log(&self) -> Vec<RequestRecord> {
        self.shared.log.snapshot()
    }

    /// Forgets the recorded requests.
    pub fn clear_request_log(&self) {
        self.shared.log.clear();
    }

    /// Stops listening and drops every open connection; connecting then
    /// fails with "connection refused". State is kept.
    pub async fn stop(&self) {
        let accept_loop = self.accept_loop.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(accept_loop) = accept_loop {
            accept_loop.abort();
            // Waiting for the cancelled task guarantees the socket is closed.
            if let Err(err) = accept_loop.await
                && !err.is_cancelled()
            {
                tracing::warn!(%err, "consul-test-server: accept loop failed");
            }
        }
    }

    /// Listens again on the same address after [`ConsulTestServer::stop`].
    /// Does nothing if already listening.
    pub async fn start_again(&self) -> io::Result<()> {
        let mut accept_loop = self.accept_loop.lock().unwrap_or_else(PoisonError::into_inner);
        if accept_loop.is_none() {
            let tcp = listener::bind(self.addr)?;
            let tls = self.tls.as_ref().map(|tls| tls.acceptor.clone());
            *accept_loop = Some(listener::spawn(tcp, Arc::clone(&self.shared), tls));
        }
        Ok(())
    }

    /// Whether the server is accepting connections.
    pub fn is_listening(&self) -> bool {
        self.accept_loop.lock().unwrap_or_else(PoisonError::into_inner).is_some()
    }
}

impl Drop for ConsulTestServer {
    fn drop(&mut self) {
        if let Some(accept_loop) = self.accept_loop.lock().unwrap_or_else(PoisonError::into_inner).take() {
            accept_loop.abort();
        }
    }
}
