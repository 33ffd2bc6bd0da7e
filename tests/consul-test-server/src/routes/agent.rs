//! `/v1/agent/check/{pass,warn,fail,update}/:check_id`
//! (<https://developer.hashicorp.com/consul/api-docs/agent/check>).
//!
//! A real agent updates its own TTL checks and syncs them to the catalog;
//! this server has no agents, so it updates the catalog check with that ID
//! on whichever node has it.

use bytes::Bytes;
use hyper::StatusCode;

use super::decode_json;
use crate::http::{HttpError, HttpResponse, Params, text};
use crate::shared::Shared;
use crate::wire::{CheckUpdate, Status};

/// Which check endpoint was called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CheckAction {
    Pass,
    Warn,
    Fail,
    Update,
}

/// Sets a check's status; `?note=` (or the body's `Output`) becomes its output.
pub(super) fn check(
    shared: &Shared,
    params: &Params,
    action: CheckAction,
    check_id: &str,
    body: &Bytes,
) -> Result<HttpResponse, HttpError> {
    let note = || params.get("note").unwrap_or_default().to_owned();
    let (status, output) = match action {
        CheckAction::Pass => (Status::Passing, note()),
        CheckAction::Warn => (Status::Warning, note()),
        CheckAction::Fail => (Status::Critical, note()),
        CheckAction::Update => {
            let update: CheckUpdate = decode_json(body)?;
            let status = Status::parse(&update.status)
                .ok_or_else(|| HttpError::bad_request(format!("Invalid check status: {:?}", update.status)))?;
            (status, update.output)
        }
    };
    let found = shared.write(|store, touched| store.update_check(check_id, status, Some(&output), touched));
    if found == 0 {
        return Err(HttpError::new(StatusCode::NOT_FOUND, format!("Unknown check ID {check_id:?}")));
    }
    Ok(text(StatusCode::OK, ""))
}
