//! Sources of desired state. A source reports everything it serves once, then only what
//! changes; the run loop merges the sources change by change ([`merge::SourceSet`]).

mod backoff;
pub mod consul;
pub mod docker;
pub mod merge;
pub(crate) mod static_file;

use std::collections::{BTreeMap, BTreeSet};

use crate::model::{Container, DesiredState, RuntimeScope, ServiceChange};

/// Which source a snapshot comes from. The order is the precedence when two sources claim
/// the same frontend: the earlier one wins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SourceId {
    /// The `--config` file.
    StaticFile,
    /// Consul's catalog and health (`[consul]`).
    Consul,
}

impl SourceId {
    /// Its name in `status`: `file` or `consul`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::StaticFile => "file",
            Self::Consul => "consul",
        }
    }
}

/// What a source tells the run loop.
#[derive(Debug)]
pub enum Update {
    /// Services of one source (static file, Consul).
    Services {
        /// Who sends it.
        source: SourceId,
        /// What it serves now.
        change: SourceChange,
    },
    /// Every container Docker runs or has created (created ones whose cgroup is known in
    /// advance), and the runtime's parent cgroup when it exists.
    Containers {
        /// The containers.
        containers: Vec<Container>,
        /// The runtime's parent cgroup: the scope of the kernel backstop.
        scope: Option<RuntimeScope>,
    },
    /// The `connect_to=<service>` tags of one Consul service's instances, by instance id
    /// (empty: none any more).
    ConsulDeclarations {
        /// The Consul service whose instances carry the tags.
        service: String,
        /// Instance id -> the services it declares.
        declarations: BTreeMap<String, BTreeSet<String>>,
    },
}

/// What a source serves, in full or as a difference.
#[derive(Debug)]
pub enum SourceChange {
    /// Everything the source serves (its first report, or a small source's every report).
    Replace(DesiredState),
    /// What changed since its last report.
    Delta(Vec<ServiceChange>),
}
