//! Exponential backoff with full jitter, for every source that retries (Consul, Docker).

use std::time::Duration;

/// Longest retry delay.
pub const BACKOFF_CAP: Duration = Duration::from_secs(30);

/// Exponential backoff with full jitter.
#[derive(Debug)]
pub struct Backoff {
    start: Duration,
    next: Duration,
}

impl Backoff {
    /// Starts at `start`, doubles up to [`BACKOFF_CAP`].
    pub fn new(start: Duration) -> Self {
        Self { start, next: start }
    }

    /// The next delay: uniform in [delay/2, delay], then the delay doubles.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(BACKOFF_CAP);
        delay / 2 + delay.mul_f64(fastrand::f64() / 2.0)
    }

    /// Back to the first delay after a success.
    pub fn reset(&mut self) {
        self.next = self.start;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_to_the_cap_and_resets() {
        let mut backoff = Backoff::new(Duration::from_millis(100));
        let first = backoff.next_delay();
        assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
        let later: Vec<Duration> = (0..20).map(|_| backoff.next_delay()).collect();
        assert!(later.iter().all(|d| *d <= BACKOFF_CAP));
        assert!(*later.last().unwrap() >= BACKOFF_CAP / 2);
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_millis(100));
    }
}
