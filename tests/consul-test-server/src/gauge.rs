//! Cheap counters of things currently open (connections, waiting blocking
//! queries), read by benchmarks while the server runs.

use std::sync::atomic::{AtomicUsize, Ordering};

/// How many of something are open right now: one atomic, raised by
/// [`Gauge::enter`] and lowered when the returned guard drops, so a task
/// that is aborted or a request whose client goes away is still counted out.
#[derive(Debug, Default)]
pub(crate) struct Gauge(AtomicUsize);

impl Gauge {
    /// Counts one more until the guard is dropped.
    pub(crate) fn enter(&self) -> GaugeGuard<'_> {
        // Relaxed: the count orders nothing else; readers only want a recent value.
        self.0.fetch_add(1, Ordering::Relaxed);
        GaugeGuard(self)
    }

    /// The current count.
    pub(crate) fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

/// Keeps one unit of a [`Gauge`] counted while alive.
#[derive(Debug)]
pub(crate) struct GaugeGuard<'a>(&'a Gauge);

impl Drop for GaugeGuard<'_> {
    fn drop(&mut self) {
        self.0.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::Gauge;

    #[test]
    fn guards_count_in_and_out() {
        let gauge = Gauge::default();
        let first = gauge.enter();
        let second = gauge.enter();
        assert_eq!(gauge.get(), 2);
        drop(first);
        assert_eq!(gauge.get(), 1);
        drop(second);
        assert_eq!(gauge.get(), 0);
    }
}
