//! Ctrl-C or SIGTERM during a benchmark: the handler only raises a flag, and every part
//! checks it between two bounded steps and stops with an error, so that each guard (agent
//! processes, cgroups, network namespaces, pins, the Consul test server, dockerd's
//! containers) removes what it created on the way out.

use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context as _, ensure};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Installs the handler (once per process).
pub fn install() -> anyhow::Result<()> {
    ctrlc::set_handler(|| INTERRUPTED.store(true, Ordering::Relaxed)).context("installing the Ctrl-C handler")
}

/// The flag, for the parts that check it themselves.
pub fn flag() -> &'static AtomicBool {
    &INTERRUPTED
}

/// Fails once Ctrl-C or SIGTERM has arrived.
pub fn check() -> anyhow::Result<()> {
    ensure!(!INTERRUPTED.load(Ordering::Relaxed), "interrupted: stopping and cleaning up");
    Ok(())
}
