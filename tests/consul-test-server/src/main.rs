//! Runs the Consul test server by hand, for development against a local agent.

use std::net::SocketAddr;

use clap::Parser;
use consul_test_server::{Acl, ConsulTestServer, Options};

/// An in-memory Consul HTTP API server (catalog, health, KV, blocking queries).
#[derive(Debug, Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8500")]
    listen: SocketAddr,
    /// Datacenter name.
    #[arg(long, default_value = "dc1")]
    datacenter: String,
    /// Enables ACLs with this read-write token (repeatable).
    #[arg(long = "token")]
    tokens: Vec<String>,
    /// Enables ACLs with this read-only token (repeatable).
    #[arg(long = "read-only-token")]
    read_only_tokens: Vec<String>,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let acl = (!args.tokens.is_empty() || !args.read_only_tokens.is_empty()).then(|| {
        let acl = args.tokens.into_iter().fold(Acl::new(), Acl::read_write);
        args.read_only_tokens.into_iter().fold(acl, Acl::read_only)
    });
    let options = Options { listen: args.listen, datacenter: args.datacenter, acl };
    let server = ConsulTestServer::start(options).await?;
    println!("consul-test-server listening on {}", server.http_addr());
    tokio::signal::ctrl_c().await
}
