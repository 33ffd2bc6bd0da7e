//! A Consul test server (`consul-test-server`) running on its own runtime for a test, and
//! what an agent fed by it serves.

use std::{collections::BTreeMap, future::Future, path::Path, time::Duration};

use consul_test_server::{ConsulTestServer, Options};

use crate::{Agent, wait_for};

/// Service name -> (VIP, port, backends), as `maps dump --json` shows them.
pub type Served = BTreeMap<String, (String, u64, Vec<String>)>;

/// The server and the runtime that drives it, for the tests and the Consul benchmark;
/// stopped on drop.
#[derive(Debug)]
pub struct TestConsul {
    runtime: tokio::runtime::Runtime,
    /// The server: register services, change checks, switch faults.
    pub server: ConsulTestServer,
}

impl TestConsul {
    /// Name of the runtime's threads: their CPU time is the server's.
    pub const THREAD_NAME: &str = "consul-server";

    /// Starts a server on 127.0.0.1 (any port) with default options.
    pub fn start() -> Self {
        Self::start_with(Options::default())
    }

    /// Starts a server with `options`.
    pub fn start_with(options: Options) -> Self {
        Self::launch(options).expect("consul test server")
    }

    /// Starts a server with `options` on a runtime of its own, two worker threads named
    /// [`TestConsul::THREAD_NAME`].
    pub fn launch(options: Options) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(Self::THREAD_NAME)
            .enable_all()
            .build()?;
        let server = runtime.block_on(ConsulTestServer::start(options))?;
        Ok(Self { runtime, server })
    }

    /// Runs one of the server's async operations (stop, start_again), or any future
    /// (an HTTP client's), on the server's runtime.
    pub fn block_on<T>(&self, future: impl Future<Output = T>) -> T {
        self.runtime.block_on(future)
    }

    /// The `[consul]` config section pointing at this server, with `extra` lines.
    pub fn config_section(&self, extra: &str) -> String {
        format!("[consul]\naddress = {:?}\n{extra}\n", self.server.addr().to_string())
    }

    /// The `[consul]` section for a server started with `tls`: its HTTPS address and its
    /// certificate, written to `dir`.
    pub fn tls_config_section(&self, dir: &Path, extra: &str) -> String {
        let ca = dir.join("consul-ca.pem");
        std::fs::write(&ca, self.server.ca_pem().expect("a TLS server")).expect("writing the CA");
        format!(
            "[consul]\naddress = {:?}\nca_cert = {:?}\n{extra}\n",
            self.server.http_addr(),
            ca.display().to_string()
        )
    }
}

/// What `agent` serves, read from its pinned maps.
pub fn served(agent: &Agent) -> Served {
    let dump = agent.dump();
    dump["services"]
        .as_array()
        .expect("services")
        .iter()
        .map(|s| {
            let backends = s["backends"]
                .as_array()
                .expect("backends")
                .iter()
                .map(|b| b.as_str().unwrap_or("").to_owned())
                .collect();
            let name = s["name"].as_str().unwrap_or_default().to_owned();
            (name, (s["vip"].as_str().unwrap_or_default().to_owned(), s["port"].as_u64().unwrap_or(0), backends))
        })
        .collect()
}

/// Waits until what `agent` serves passes `check`.
pub fn wait_served(agent: &Agent, timeout: Duration, check: impl Fn(&Served) -> bool) -> bool {
    wait_for(timeout, || check(&served(agent)).then_some(())).is_some()
}
