//! Enums written by name (in the config file, Consul meta and container labels), parsed
//! here once, with one error that lists the accepted names. The parsing is a trait's rather
//! than `FromStr`: `Algorithm` and `PolicyMode` belong to `viking-common`, and this crate
//! cannot implement a foreign trait for them. `Protocol`, the agent's own, has `FromStr` too.

use std::fmt;

use viking_common::{Algorithm, PolicyMode};

use super::Protocol;

/// An enum written by its name.
pub trait Named: Copy + 'static {
    /// Every value, in the order an error lists them.
    const ALL: &'static [Self];

    /// The name as written.
    fn name(self) -> &'static str;

    /// The value called `text`.
    fn parse(text: &str) -> Result<Self, UnknownName> {
        Self::parse_among(text, Self::ALL)
    }

    /// The value called `text`, or the default when nothing is written.
    fn parse_or_default(text: Option<&str>) -> Result<Self, UnknownName>
    where
        Self: Default,
    {
        text.map_or_else(|| Ok(Self::default()), Self::parse)
    }

    /// The value called `text` among `accepted`, where a rule allows only some values.
    fn parse_among(text: &str, accepted: &[Self]) -> Result<Self, UnknownName> {
        accepted
            .iter()
            .copied()
            .find(|value| value.name() == text)
            .ok_or_else(|| UnknownName { expected: accepted.iter().map(|value| value.name()).collect() })
    }
}

impl Named for Protocol {
    const ALL: &'static [Self] = &[Self::Tcp, Self::Udp];

    fn name(self) -> &'static str {
        Protocol::name(self)
    }
}

impl Named for Algorithm {
    const ALL: &'static [Self] = &Algorithm::ALL;

    fn name(self) -> &'static str {
        Algorithm::name(self)
    }
}

impl Named for PolicyMode {
    const ALL: &'static [Self] = &[Self::Off, Self::Audit, Self::Enforce, Self::Bypass];

    fn name(self) -> &'static str {
        PolicyMode::name(self)
    }
}

/// The modes an operator may make every container's default (`[docker] policy`): `bypass`
/// is for a container that rewrites its connects itself, never for all of them.
pub const DEFAULT_POLICY_MODES: &[PolicyMode] = &[PolicyMode::Off, PolicyMode::Audit, PolicyMode::Enforce];

/// A name that is none of the accepted ones.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct UnknownName {
    /// The accepted names.
    pub expected: Vec<&'static str>,
}

/// `must be "tcp" or "udp"`; four names and more as `must be one of "a", "b", "c", "d"`.
impl fmt::Display for UnknownName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let quoted: Vec<String> = self.expected.iter().map(|name| format!("{name:?}")).collect();
        match quoted.split_last() {
            Some((last, rest)) if !rest.is_empty() && quoted.len() <= 3 => {
                write!(f, "must be {} or {last}", rest.join(", "))
            }
            _ => write!(f, "must be one of {}", quoted.join(", ")),
        }
    }
}

impl std::str::FromStr for Protocol {
    type Err = UnknownName;

    /// `tcp` or `udp`.
    fn from_str(text: &str) -> Result<Self, UnknownName> {
        Self::parse(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_an_unknown_one_lists_the_accepted() {
        assert_eq!("udp".parse::<Protocol>(), Ok(Protocol::Udp));
        assert_eq!(Algorithm::parse("least_conn"), Ok(Algorithm::LeastConn));
        assert_eq!(Algorithm::parse_or_default(None), Ok(Algorithm::RoundRobin));
        assert_eq!(Protocol::parse_or_default(None), Ok(Protocol::Tcp));
        assert_eq!(PolicyMode::parse("bypass"), Ok(PolicyMode::Bypass));
        let bypass = PolicyMode::parse_among("bypass", DEFAULT_POLICY_MODES).unwrap_err();
        assert_eq!(bypass.expected, ["off", "audit", "enforce"]);
        assert_eq!(bypass.to_string(), r#"must be "off", "audit" or "enforce""#);
        assert_eq!("sctp".parse::<Protocol>().unwrap_err().to_string(), r#"must be "tcp" or "udp""#);
        assert_eq!(
            Algorithm::parse("fastest").unwrap_err().to_string(),
            r#"must be one of "round_robin", "random", "weighted", "least_conn""#
        );
    }
}
