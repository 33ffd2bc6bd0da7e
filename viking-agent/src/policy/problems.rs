//! What in containers' declarations and labels the policy cannot use, and why; and why a
//! policy map write failed. The run loop logs them; tests match on the variants.

use viking_common::PolicyMode;

use super::declarations::{LABEL_CONNECT_TO, LABEL_POLICY};
use crate::{
    config::LabelRule,
    dataplane::tables::TableError,
    model::{NameError, Protocol},
};

/// A declaration or label of a container that is ignored, or not honoured.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PolicyProblem {
    /// `viking.connect_to` lists a name that cannot name a service.
    #[error("container {container:?}: label {LABEL_CONNECT_TO} names {service:?}, which {error}; ignored")]
    ConnectToName {
        /// The container, as logs name it.
        container: String,
        /// The name listed.
        service: String,
        /// Why it cannot name a service.
        error: NameError,
    },
    /// `viking.policy` names no mode.
    #[error(
        "container {container:?}: label {LABEL_POLICY} = {value:?} is not off, audit, enforce or bypass; \
         the default applies"
    )]
    PolicyLabel {
        /// The container, as logs name it.
        container: String,
        /// The label's value.
        value: String,
    },
    /// Two `BACKEND_` variables map the same port.
    #[error(
        "container {container:?}: {key} maps port {port} to {service:?}, already mapped to {previous:?} by \
         another BACKEND_ variable; the last one wins"
    )]
    OverlayRemapped {
        /// The container, as logs name it.
        container: String,
        /// The variable that wins.
        key: String,
        /// The ambassador port.
        port: u16,
        /// The service it maps to now.
        service: String,
        /// The service it mapped to before.
        previous: String,
    },
    /// A `BACKEND_` variable that is not `<service>;<port>`.
    #[error("container {container:?}: {key}={value:?}: {error}; ignored")]
    BackendEnv {
        /// The container, as logs name it.
        container: String,
        /// The variable.
        key: String,
        /// Its value.
        value: String,
        /// What is wrong with it.
        error: BackendEnvError,
    },
    /// A `viking.policy` label that the operator's rules do not let the container choose.
    #[error(
        "container {container:?}: label viking.policy={} is not honoured: {}, and the container is not in \
         [docker.trusted] (image {image:?}); it runs in {}",
        asked.name(),
        refused_because(*rule),
        runs_in.name()
    )]
    LabelRefused {
        /// The container, as logs name it.
        container: String,
        /// The mode the label asks for.
        asked: PolicyMode,
        /// What labels may do (`[docker] policy_labels`).
        rule: LabelRule,
        /// The container's image.
        image: String,
        /// The mode it gets.
        runs_in: PolicyMode,
    },
    /// A declared service that is not served (yet).
    #[error("container {container:?} declares service {service:?}, which does not exist (yet); ignored until it does")]
    UnknownService {
        /// The container, as logs name it.
        container: String,
        /// The service declared.
        service: String,
    },
    /// An overlay whose service has several ports of the protocol, none of them the
    /// overlay's.
    #[error(
        "container {container:?}: overlay port {port} -> {service:?}: the service has several {protocol} ports and \
         none is {port}; ignored"
    )]
    AmbiguousOverlay {
        /// The container, as logs name it.
        container: String,
        /// The ambassador port.
        port: u16,
        /// The service.
        service: String,
        /// The protocol.
        protocol: Protocol,
    },
}

/// Why a label that asks for a mode is not honoured.
fn refused_because(rule: LabelRule) -> &'static str {
    match rule {
        LabelRule::Ignore => "labels do not choose modes here (policy_labels = \"ignore\")",
        LabelRule::Tighten | LabelRule::Any => "a label may only make a container stricter",
    }
}

/// What is wrong with a `BACKEND_<NAME>=<service>;<port>` value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BackendEnvError {
    /// No `;`.
    #[error("expected <service>;<port>")]
    Format,
    /// The service part cannot name a service.
    #[error("service {service:?} {error}")]
    Service {
        /// The service part.
        service: String,
        /// Why.
        error: NameError,
    },
    /// The port part is not a number up to 65535.
    #[error("port {0:?} is not 1..=65535")]
    Port(String),
    /// The port part is 0.
    #[error("port 0 is not 1..=65535")]
    PortZero,
}

/// A policy map entry that could not be written.
#[derive(Debug, thiserror::Error)]
pub enum PolicyWriteError {
    /// A write or delete failed.
    #[error(transparent)]
    Table(#[from] TableError),
    /// An insert failed; the map's size is the likely cause.
    #[error("{error} (the map holds {capacity} {entries})")]
    Insert {
        /// The map error.
        error: TableError,
        /// The map's size.
        capacity: u32,
        /// What its entries are, e.g. `declarations`.
        entries: &'static str,
    },
}
