//! Outlier ejection settings of a service, checked once for every source (TOML and
//! Consul meta use the same keys and ranges).

use std::fmt;

use viking_common::OutlierPolicy;

/// Passive outlier ejection (TCP): after `consecutive_failures` failed connects in a row
/// (refused, reset, or SYN timed out) a backend gets no new connects for `ejection_secs`;
/// each ejection that follows without a recovery lasts twice as long, up to
/// `max_ejection_secs`. At most `max_ejection_percent` of the service's backends are
/// ejected at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OutlierDetection {
    /// Failures in a row that eject a backend; 0 turns ejection off.
    pub consecutive_failures: u16,
    /// The first ejection, in seconds.
    pub ejection_secs: u32,
    /// The longest ejection, in seconds.
    pub max_ejection_secs: u32,
    /// The largest share of the service's backends ejected at once, in percent.
    pub max_ejection_percent: u8,
}

impl Default for OutlierDetection {
    /// 3 failures, 10 s doubling up to 300 s, at most half of the backends (Envoy's
    /// consecutive-5xx defaults, with a larger share and fewer failures: a refused connect
    /// is a clearer signal than an HTTP 5xx).
    fn default() -> Self {
        Self { consecutive_failures: 3, ejection_secs: 10, max_ejection_secs: 300, max_ejection_percent: 50 }
    }
}

/// The settings' keys: `outlier.<key>` in a `[[service]]` table, `viking_outlier_<key>`
/// in Consul service meta.
pub const OUTLIER_KEYS: [&str; 4] =
    ["consecutive_failures", "ejection_seconds", "max_ejection_seconds", "max_ejection_percent"];

/// A value outside its range, an unknown key, or keys that disagree.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{problem}")]
pub struct OutlierError {
    /// The key at fault (one of [`OUTLIER_KEYS`], or the unknown one).
    pub key: String,
    /// What is wrong.
    pub problem: OutlierProblem,
}

/// What is wrong with an outlier setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OutlierProblem {
    /// The value is out of range.
    #[error("must be {min}{}{max}", if *off_at_zero { " (off) ..= " } else { "..=" })]
    OutOfRange {
        /// The smallest accepted value.
        min: i64,
        /// The largest accepted value.
        max: i64,
        /// Whether 0 turns ejection off.
        off_at_zero: bool,
    },
    /// No setting has this key.
    #[error("unknown key; known keys: {}", OUTLIER_KEYS.join(", "))]
    UnknownKey,
    /// The longest ejection is shorter than the first.
    #[error("must be at least ejection_seconds ({0})")]
    ShorterThanFirst(u32),
}

impl OutlierDetection {
    /// Sets `key` to `value`, checking its range.
    pub fn set(&mut self, key: &str, value: i64) -> Result<(), OutlierError> {
        match key {
            "consecutive_failures" => self.consecutive_failures = in_range(key, value, 0, 1000)?,
            "ejection_seconds" => self.ejection_secs = in_range(key, value, 1, 3600)?,
            "max_ejection_seconds" => self.max_ejection_secs = in_range(key, value, 1, 86_400)?,
            "max_ejection_percent" => self.max_ejection_percent = in_range(key, value, 0, 100)?,
            _ => return Err(OutlierError { key: key.into(), problem: OutlierProblem::UnknownKey }),
        }
        Ok(())
    }

    /// Checks what the keys must agree on, once all are set.
    pub fn check(self) -> Result<Self, OutlierError> {
        if self.max_ejection_secs < self.ejection_secs {
            return Err(OutlierError {
                key: "max_ejection_seconds".into(),
                problem: OutlierProblem::ShorterThanFirst(self.ejection_secs),
            });
        }
        Ok(self)
    }

    /// The kernel's form (all zero when ejection is off).
    pub fn policy(&self) -> OutlierPolicy {
        if self.consecutive_failures == 0 {
            return OutlierPolicy::default();
        }
        OutlierPolicy {
            base_ejection_ms: self.ejection_secs.saturating_mul(1000),
            max_ejection_ms: self.max_ejection_secs.saturating_mul(1000),
            consecutive_failures: self.consecutive_failures,
            max_ejection_percent: self.max_ejection_percent,
            _pad: 0,
        }
    }

    /// Read back from the kernel's form.
    pub fn from_policy(policy: &OutlierPolicy) -> Self {
        if !policy.is_enabled() {
            return Self { consecutive_failures: 0, ..Self::default() };
        }
        Self {
            consecutive_failures: policy.consecutive_failures,
            ejection_secs: policy.base_ejection_ms / 1000,
            max_ejection_secs: policy.max_ejection_ms / 1000,
            max_ejection_percent: policy.max_ejection_percent,
        }
    }
}

impl fmt::Display for OutlierDetection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.consecutive_failures == 0 {
            return f.write_str("ejection off");
        }
        write!(
            f,
            "ejection after {} failures for {}..{} s, at most {}%",
            self.consecutive_failures, self.ejection_secs, self.max_ejection_secs, self.max_ejection_percent
        )
    }
}

/// `value` of `key` when it lies in `min..=max`.
fn in_range<T: TryFrom<i64>>(key: &str, value: i64, min: i64, max: i64) -> Result<T, OutlierError> {
    (min..=max).contains(&value).then(|| T::try_from(value).ok()).flatten().ok_or_else(|| OutlierError {
        key: key.into(),
        problem: OutlierProblem::OutOfRange { min, max, off_at_zero: key == "consecutive_failures" },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_checks_its_range_and_names_itself() {
        let mut outlier = OutlierDetection::default();
        for (key, bad, good, message) in [
            ("consecutive_failures", 1001, 5, "must be 0 (off) ..= 1000"),
            ("ejection_seconds", 0, 2, "must be 1..=3600"),
            ("max_ejection_seconds", 86_401, 60, "must be 1..=86400"),
            ("max_ejection_percent", 101, 30, "must be 0..=100"),
        ] {
            let err = outlier.set(key, bad).unwrap_err();
            assert_eq!(err.key, key);
            assert!(matches!(err.problem, OutlierProblem::OutOfRange { .. }), "{err:?}");
            assert_eq!(err.to_string(), message);
            outlier.set(key, good).unwrap();
        }
        assert_eq!(
            outlier,
            OutlierDetection {
                consecutive_failures: 5,
                ejection_secs: 2,
                max_ejection_secs: 60,
                max_ejection_percent: 30
            }
        );
        let unknown = outlier.set("interval", 1).unwrap_err();
        assert_eq!((unknown.key.as_str(), unknown.problem), ("interval", OutlierProblem::UnknownKey));
        assert_eq!(
            unknown.to_string(),
            "unknown key; known keys: consecutive_failures, ejection_seconds, max_ejection_seconds, max_ejection_percent"
        );
    }

    #[test]
    fn the_longest_ejection_may_not_be_shorter_than_the_first() {
        let mut outlier = OutlierDetection::default();
        outlier.set("ejection_seconds", 60).unwrap();
        outlier.set("max_ejection_seconds", 30).unwrap();
        let err = outlier.check().unwrap_err();
        assert_eq!((err.key.as_str(), err.problem), ("max_ejection_seconds", OutlierProblem::ShorterThanFirst(60)));
        assert_eq!(err.to_string(), "must be at least ejection_seconds (60)");
    }

    #[test]
    fn the_kernel_form_round_trips_and_off_is_all_zero() {
        let outlier = OutlierDetection::default();
        assert_eq!(OutlierDetection::from_policy(&outlier.policy()), outlier);
        let off = OutlierDetection { consecutive_failures: 0, ..outlier };
        assert_eq!(off.policy(), OutlierPolicy::default());
        assert_eq!(OutlierDetection::from_policy(&off.policy()), off);
    }
}
