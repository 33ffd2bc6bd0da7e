//! Why the dataplane could not be installed, adopted or removed: one error for all of it.

use std::path::PathBuf;

use super::tables;

/// Why the dataplane could not be installed or removed.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    /// Pin directory problems (bpffs missing, permissions).
    #[error("pin directory {path}: {source}")]
    PinDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A pinned map has a layout this agent does not understand.
    #[error(
        "pinned map {path} has {what} {found}, this agent needs {expected}; \
         it was created by another Viking version: run `viking-agent uninstall` first"
    )]
    IncompatiblePin {
        /// The pin.
        path: PathBuf,
        /// Which property differs.
        what: &'static str,
        /// Its value in the kernel.
        found: u32,
        /// The value this agent needs.
        expected: u32,
    },
    /// The pins were made by a newer Viking, whose layout this agent cannot use.
    #[error(
        "the pins under {path} have layout {found}, which needs an agent of layout {readable_by} \
         or newer; this agent's layout is {supported}: they were created by a newer Viking \
         version. Run that version, or `viking-agent uninstall` first (VIP connects fail until \
         an agent installs again); nothing was changed"
    )]
    NewerLayout {
        /// The pin directory.
        path: PathBuf,
        /// The layout version found.
        found: u32,
        /// The oldest layout that can use the pins.
        readable_by: u32,
        /// [`LAYOUT_VERSION`](viking_common::LAYOUT_VERSION).
        supported: u32,
    },
    /// The object could not be loaded (the verifier log is in the message).
    #[error("loading the eBPF object: {0}")]
    Load(#[from] aya::EbpfError),
    /// A program could not be loaded or attached.
    #[error("program {program}: {source}")]
    Program {
        /// The program.
        program: &'static str,
        /// The aya error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The cgroup could not be opened.
    #[error("cgroup {path}: {source}")]
    Cgroup {
        /// The cgroup directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A map could not be opened.
    #[error(transparent)]
    Table(#[from] tables::TableError),
}
