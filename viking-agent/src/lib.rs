//! Viking's per-host agent: loads the kernel programs, keeps their pinned maps in sync with
//! the desired state from its sources, and reports what the kernel holds.
//!
//! Layout, each module using only those listed after it: `commands` (one module per verb),
//! `runtime` (the state the run loop owns), `sources` (what produces the desired state:
//! static file, Consul, Docker), `policy` (per-container declarations and their maps),
//! `dns`, `metrics`, `reconcile` (the single writer of the service maps), `dataplane`
//! (programs, pins, typed maps), `config` (the file: one adapter, beside Consul and Docker,
//! and the settings of the others), `model` (the domain: desired state, containers, limits,
//! and the checks every source's input goes through), `allocator` (giving memory back).
//!
//! `runtime` and `metrics`, and most modules below the others, are private to the crate,
//! so the compiler reports what nothing uses; the public ones are those the binary, the
//! integration tests, the benchmark and the fuzz targets call.

mod allocator;
pub mod commands;
pub mod config;
pub mod dataplane;
pub mod dns;
mod metrics;
pub mod model;
pub mod policy;
pub mod reconcile;
mod runtime;
pub mod sources;
