//! HTTP tests of the Consul test server, through a real client (reqwest)
//! against a server on 127.0.0.1. Every wait is short and bounded.

mod acl;
mod agent_self;
mod blocking;
mod catalog;
mod catalog_node;
mod catalog_nodes;
mod counters;
mod faults;
mod health;
mod health_node;
mod health_state;
mod kv;
mod lifecycle;
mod support;
mod tls;
mod txn;
