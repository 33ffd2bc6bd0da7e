//! ACL tokens (<https://developer.hashicorp.com/consul/api-docs/api-structure#authentication>).
//!
//! A request carries its token in `?token=`, `X-Consul-Token` or
//! `Authorization: Bearer`, looked up in that order as Consul does. With ACLs
//! enabled, an unknown token gets `403 ACL not found` and a missing token, or
//! a read-only token on a write, gets `403 Permission denied`.

use std::collections::HashMap;

use hyper::HeaderMap;

use crate::http::{HttpError, Params};

/// What one token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRights {
    /// GET endpoints only.
    ReadOnly,
    /// Everything.
    ReadWrite,
}

/// The ACL configuration: which secret tokens exist and what they may do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Acl {
    tokens: HashMap<String, TokenRights>,
}

impl Acl {
    /// ACLs enabled with no tokens yet: every request is denied.
    pub fn new() -> Self {
        Acl::default()
    }

    /// Adds a token that may read and write.
    pub fn read_write(mut self, token: impl Into<String>) -> Self {
        self.tokens.insert(token.into(), TokenRights::ReadWrite);
        self
    }

    /// Adds a token that may only read.
    pub fn read_only(mut self, token: impl Into<String>) -> Self {
        self.tokens.insert(token.into(), TokenRights::ReadOnly);
        self
    }

    /// Decides whether a request with `token` may do `access`.
    pub(crate) fn authorize(&self, token: Option<&str>, access: Access) -> Result<(), HttpError> {
        let allowed = match access {
            Access::Open => return Ok(()),
            Access::Read => self.resolve(token)?.can_read(),
            Access::Write => self.resolve(token)?.can_write(),
        };
        if allowed { Ok(()) } else { Err(HttpError::forbidden("Permission denied")) }
    }

    /// What `token` may do: an unknown token fails with `ACL not found`, as
    /// Consul's token resolution does; no token is the anonymous token,
    /// which may do nothing (a default-deny policy).
    pub(crate) fn resolve(&self, token: Option<&str>) -> Result<Grant, HttpError> {
        match token.map(|token| self.tokens.get(token)) {
            None => Ok(Grant::Nothing),
            Some(None) => Err(HttpError::forbidden("ACL not found")),
            Some(Some(TokenRights::ReadOnly)) => Ok(Grant::Read),
            Some(Some(TokenRights::ReadWrite)) => Ok(Grant::Write),
        }
    }
}

/// What a resolved token allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Grant {
    /// Nothing (the anonymous token).
    Nothing,
    /// Reads.
    Read,
    /// Reads and writes; also what every request gets with ACLs disabled.
    Write,
}

impl Grant {
    /// What a request with `token` may do on a server with `acl`.
    pub(crate) fn of(acl: Option<&Acl>, token: Option<&str>) -> Result<Grant, HttpError> {
        acl.map_or(Ok(Grant::Write), |acl| acl.resolve(token))
    }

    pub(crate) fn can_read(self) -> bool {
        self != Grant::Nothing
    }

    pub(crate) fn can_write(self) -> bool {
        self == Grant::Write
    }
}

/// What an endpoint needs from the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// No ACL check here: status and datacenter listing, and transactions,
    /// whose handler checks each operation.
    Open,
    /// Read permission.
    Read,
    /// Write permission.
    Write,
}

/// The request's token, if it has a non-empty one.
pub(crate) fn token(params: &Params, headers: &HeaderMap) -> Option<String> {
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    let bearer = header("authorization").and_then(|value| value.strip_prefix("Bearer "));
    [params.get("token"), header("x-consul-token"), bearer]
        .into_iter()
        .flatten()
        .map(str::trim)
        .find(|token| !token.is_empty())
        .map(str::to_owned)
}
