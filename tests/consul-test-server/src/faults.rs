//! Fault switches: make the server misbehave like a sick Consul while it runs.
//!
//! Each rule applies to request paths starting with its prefix (`""` for all).
//! Setting a rule for a prefix replaces the previous rule for that prefix.
//! When several rules match, every matching [`Fault::Delay`] is added up and,
//! of the other faults, the one with the longest prefix wins.

use std::time::Duration;

use hyper::StatusCode;
use tokio::sync::watch;

/// One way to misbehave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer 500 with the body Consul sends when it has lost its leader.
    Status500,
    /// Answer 500 with this body.
    Status500Body(String),
    /// Answer 429 `Too Many Requests`, as Consul's rate limiter does.
    TooManyRequests,
    /// Answer 429 with a `Retry-After` header (whole seconds, rounded up).
    TooManyRequestsRetryAfter(Duration),
    /// Accept the request and never answer, until the rule is cleared (then
    /// the request proceeds normally) or the client gives up.
    Hang,
    /// Answer normally, but only after this delay.
    Delay(Duration),
}

/// What a matching set of rules does to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Answer with this status, body and optional `Retry-After` seconds.
    Respond { status: StatusCode, body: String, retry_after: Option<u64> },
    /// Serve the request normally.
    Proceed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    prefix: String,
    fault: Fault,
}

/// The server's fault rules, changeable at any time from tests.
#[derive(Debug)]
pub struct FaultSwitch {
    rules: watch::Sender<Vec<Rule>>,
}

impl Default for FaultSwitch {
    fn default() -> Self {
        FaultSwitch { rules: watch::channel(Vec::new()).0 }
    }
}

impl FaultSwitch {
    /// Applies `fault` to every path.
    pub fn set(&self, fault: Fault) {
        self.set_for("", fault);
    }

    /// Applies `fault` to paths starting with `prefix` (e.g. `/v1/health/`).
    pub fn set_for(&self, prefix: &str, fault: Fault) {
        self.rules.send_modify(|rules| {
            rules.retain(|rule| rule.prefix != prefix);
            rules.push(Rule { prefix: prefix.to_owned(), fault });
        });
    }

    /// Removes the rule for `prefix`; hanging requests it held proceed.
    pub fn clear_for(&self, prefix: &str) {
        self.rules.send_modify(|rules| rules.retain(|rule| rule.prefix != prefix));
    }

    /// Removes every rule; hanging requests proceed.
    pub fn clear(&self) {
        self.rules.send_modify(Vec::clear);
    }

    /// Waits out any hang and delay for `path`, then says how to answer.
    pub(crate) async fn apply(&self, path: &str) -> Verdict {
        let mut changes = self.rules.subscribe();
        let (delay, fault) = loop {
            let (delay, fault) = evaluate(&changes.borrow_and_update(), path);
            if fault != Some(Fault::Hang) {
                break (delay, fault);
            }
            if changes.changed().await.is_err() {
                break (delay, None);
            }
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        match fault {
            Some(Fault::Status500) => respond(StatusCode::INTERNAL_SERVER_ERROR, "No cluster leader", None),
            Some(Fault::Status500Body(body)) => respond(StatusCode::INTERNAL_SERVER_ERROR, &body, None),
            Some(Fault::TooManyRequests) => respond(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests", None),
            Some(Fault::TooManyRequestsRetryAfter(after)) => {
                let seconds = after.as_secs() + u64::from(after.subsec_nanos() > 0);
                respond(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests", Some(seconds))
            }
            Some(Fault::Hang | Fault::Delay(_)) | None => Verdict::Proceed,
        }
    }
}

fn respond(status: StatusCode, body: &str, retry_after: Option<u64>) -> Verdict {
    Verdict::Respond { status, body: body.to_owned(), retry_after }
}

/// Total delay and the deciding non-delay fault for `path`.
fn evaluate(rules: &[Rule], path: &str) -> (Duration, Option<Fault>) {
    let matching = rules.iter().filter(|rule| path.starts_with(&rule.prefix));
    let mut delay = Duration::ZERO;
    let mut decisive: Option<&Rule> = None;
    for rule in matching {
        match rule.fault {
            Fault::Delay(extra) => delay += extra,
            _ if decisive.is_none_or(|d| d.prefix.len() < rule.prefix.len()) => decisive = Some(rule),
            _ => {}
        }
    }
    (delay, decisive.map(|rule| rule.fault.clone()))
}

#[cfg(test)]
mod tests {
    use super::{Fault, FaultSwitch, Verdict};
    use hyper::StatusCode;
    use std::time::Duration;

    #[tokio::test]
    async fn longest_prefix_wins_and_clear_restores() {
        let faults = FaultSwitch::default();
        faults.set(Fault::Status500);
        faults.set_for("/v1/kv/", Fault::TooManyRequestsRetryAfter(Duration::from_millis(1500)));
        let kv = faults.apply("/v1/kv/a").await;
        assert_eq!(
            kv,
            Verdict::Respond {
                status: StatusCode::TOO_MANY_REQUESTS,
                body: "Too Many Requests".into(),
                retry_after: Some(2)
            }
        );
        let health = faults.apply("/v1/health/service/web").await;
        assert!(matches!(health, Verdict::Respond { status: StatusCode::INTERNAL_SERVER_ERROR, .. }));
        faults.clear();
        assert_eq!(faults.apply("/v1/kv/a").await, Verdict::Proceed);
    }
}
