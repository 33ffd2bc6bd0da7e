//! Viking's per-host agent: loads the kernel programs, keeps their pinned maps in sync with
//! the desired state from its sources, and reports what the kernel holds.
//!
//! Layout: `config` (the file), `model` (desired state), `sources` (what produces it),
//! `reconcile` (the single writer of the maps), `dataplane` (programs, pins, typed maps),
//! `commands` (one module per CLI verb).

pub mod commands;
pub mod config;
pub mod dataplane;
pub mod model;
pub mod reconcile;
pub mod sources;
