//! Viking's per-host agent: loads the kernel programs, keeps their pinned maps in sync with
//! the desired state from its sources, and reports what the kernel holds.
//!
//! Layout: `config` (the file), `model` (desired state), `sources` (what produces it:
//! static file, Consul, Docker), `reconcile` (the single writer of the service maps),
//! `policy` (per-container declarations and their maps), `runtime` (the state the run
//! loop owns), `dataplane` (programs, pins, typed maps), `commands` (one module per verb).

pub mod commands;
pub mod config;
pub mod dataplane;
pub mod dns;
pub mod metrics;
pub mod model;
pub mod policy;
pub mod reconcile;
pub mod runtime;
pub mod sources;
