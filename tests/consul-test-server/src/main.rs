//! Runs the Consul test server by hand, for development against a local agent.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use consul_test_server::{Acl, ConsulTestServer, Options};

/// An in-memory Consul HTTP API server (catalog, health, KV, transactions,
/// blocking queries).
#[derive(Debug, Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8500")]
    listen: SocketAddr,
    /// Datacenter name.
    #[arg(long, default_value = "dc1")]
    datacenter: String,
    /// The agent's node name.
    #[arg(long, default_value = "consul-test-server")]
    node_name: String,
    /// Behave like `consul agent -dev`: register the server's own node and `consul` service.
    #[arg(long)]
    dev: bool,
    /// Enables ACLs with this read-write token (repeatable).
    #[arg(long = "token")]
    tokens: Vec<String>,
    /// Enables ACLs with this read-only token (repeatable).
    #[arg(long = "read-only-token")]
    read_only_tokens: Vec<String>,
    /// Serve HTTPS (HTTP/2 or HTTP/1.1 by ALPN) with a self-signed certificate.
    #[arg(long)]
    tls: bool,
    /// With `--tls`, offer HTTP/1.1 only (as a TLS-terminating proxy may), not HTTP/2.
    #[arg(long, requires = "tls")]
    no_http2: bool,
    /// With `--tls`, write the certificate (PEM) clients must trust to this file.
    #[arg(long, requires = "tls")]
    ca_out: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let acl = (!args.tokens.is_empty() || !args.read_only_tokens.is_empty()).then(|| {
        let acl = args.tokens.into_iter().fold(Acl::new(), Acl::read_write);
        args.read_only_tokens.into_iter().fold(acl, Acl::read_only)
    });
    let options = Options {
        listen: args.listen,
        datacenter: args.datacenter,
        acl,
        tls: args.tls,
        http2: !args.no_http2,
        node_name: args.node_name,
        dev_mode: args.dev,
    };
    let server = ConsulTestServer::start(options).await?;
    if let (Some(path), Some(pem)) = (&args.ca_out, server.ca_pem()) {
        std::fs::write(path, pem)?;
        println!("consul-test-server certificate written to {}", path.display());
    }
    println!("consul-test-server listening on {}", server.http_addr());
    tokio::signal::ctrl_c().await
}
