//! A Consul test server (`consul-test-server`) running on its own runtime for a test.

use std::future::Future;

use consul_test_server::{ConsulTestServer, Options};

/// The server and the runtime that drives it; stopped on drop.
#[derive(Debug)]
pub struct TestConsul {
    runtime: tokio::runtime::Runtime,
    /// The server: register services, change checks, switch faults.
    pub server: ConsulTestServer,
}

impl TestConsul {
    /// Starts a server on 127.0.0.1 (any port) with default options.
    pub fn start() -> Self {
        Self::start_with(Options::default())
    }

    /// Starts a server with `options`.
    pub fn start_with(options: Options) -> Self {
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
        let server = runtime.block_on(ConsulTestServer::start(options)).expect("consul test server");
        Self { runtime, server }
    }

    /// Runs one of the server's async operations (stop, start_again).
    pub fn block_on<T>(&self, future: impl Future<Output = T>) -> T {
        self.runtime.block_on(future)
    }

    /// The `[consul]` config section pointing at this server, with `extra` lines.
    pub fn config_section(&self, extra: &str) -> String {
        format!("[consul]\naddress = {:?}\n{extra}\n", self.server.addr().to_string())
    }
}
