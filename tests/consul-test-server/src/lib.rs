//! An in-process Consul HTTP API server for tests and benchmarks.
//!
//! It implements, independently of any client, the part of Consul's HTTP API
//! a service-discovery agent uses, with Consul's wire format (field names,
//! casing, `null`-versus-`[]` choices, status codes and error texts) and its
//! index and blocking-query semantics, so a client that works against this
//! server works against real Consul unchanged. It keeps all data in memory,
//! has no agents, gossip or sessions, and serves one datacenter as its only
//! (leader) server. With [`Options::tls`] it serves HTTPS, HTTP/2 included,
//! as Consul's HTTPS port does.
//!
//! Pages followed:
//! - Blocking queries: <https://developer.hashicorp.com/consul/api-docs/features/blocking>
//! - Consistency modes (`?stale`, `?consistent`): <https://developer.hashicorp.com/consul/api-docs/features/consistency>
//! - Catalog, list nodes included: <https://developer.hashicorp.com/consul/api-docs/catalog>
//! - Health, checks in state included: <https://developer.hashicorp.com/consul/api-docs/health>
//! - KV store: <https://developer.hashicorp.com/consul/api-docs/kv>
//! - Transactions (KV operations): <https://developer.hashicorp.com/consul/api-docs/txn>
//! - Agent configuration (`/v1/agent/self`): <https://developer.hashicorp.com/consul/api-docs/agent#read-configuration>
//! - Agent checks (TTL updates): <https://developer.hashicorp.com/consul/api-docs/agent/check>
//! - ACL token header: <https://developer.hashicorp.com/consul/api-docs/api-structure#authentication>
//! - HTTP/2 on the HTTPS API: <https://github.com/hashicorp/consul/pull/3657>
//!
//! Where the pages are silent, Consul's source decides (`agent/*_endpoint.go`
//! and `agent/consul/state/*.go`); the module docs name what each follows.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use consul_test_server::{CheckSpec, ConsulTestServer, Fault, Options, Registration, Status};
//!
//! let server = ConsulTestServer::start(Options::default()).await?;
//! server
//!     .register(Registration::new("host-a", "10.0.0.1", "web").id("web-1").port(8080)
//!         .check(CheckSpec::passing("web-1-check")))
//!     .expect("valid registration");
//! // GET {server.http_addr()}/v1/health/service/web?passing …
//! server.set_check_status("web-1-check", Status::Critical);
//! server.faults().set(Fault::Status500);
//! server.faults().clear();
//! server.stop().await;
//! server.start_again().await?;
//!
//! // HTTPS with HTTP/2: trust `ca_pem()`, connect to `http_addr()` (https://…).
//! let tls = ConsulTestServer::start(Options { tls: true, ..Options::default() }).await?;
//! let _pem = tls.ca_pem().expect("TLS servers have a certificate");
//! let _busy = (tls.open_connections(), tls.open_blocking_queries());
//! # Ok(())
//! # }
//! ```

mod acl;
mod blocking;
mod duration;
mod faults;
mod gauge;
mod http;
mod identity;
mod listener;
mod registration;
mod request_log;
mod routes;
mod server;
mod shared;
mod state;
mod tls;
mod wire;

pub use acl::{Acl, TokenRights};
pub use faults::{Fault, FaultSwitch};
pub use registration::{CheckSpec, Registration};
pub use request_log::RequestRecord;
pub use server::{ConsulTestServer, KvEntry, Options};
pub use state::CatalogError;
pub use wire::{Status, Weights};
