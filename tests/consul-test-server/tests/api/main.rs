//! HTTP tests of the Consul test server, through a real client (reqwest)
//! against a server on 127.0.0.1. Every wait is short and bounded.

mod acl;
mod blocking;
mod catalog;
mod faults;
mod health;
mod kv;
mod lifecycle;
mod support;
