//! The slot layout of a service: which backend each of the slots `1..=n` names. The kernel
//! picks slots (round-robin, random, least-loaded); weights are expressed by giving a
//! backend several slots.

use std::net::SocketAddr;

use viking_common::Algorithm;

use crate::model::{BackendSpec, Service};

/// The backends of `service` in slot order. `weighted` services get each backend as many
/// times as its weight (reduced by their common divisor, scaled down to `max_slots`),
/// interleaved by smooth weighted round-robin so that a round-robin pass over the slots
/// spreads connects evenly in time; other algorithms get one slot per backend.
pub fn layout(service: &Service, max_slots: u16) -> Vec<SocketAddr> {
    if service.algorithm != Algorithm::Weighted || service.backends.is_empty() {
        return service.backends.iter().map(|b| b.addr).collect();
    }
    let weights = fit_weights(&service.backends, usize::from(max_slots));
    let total: i64 = weights.iter().sum();
    let mut current = vec![0i64; weights.len()];
    let mut slots = Vec::with_capacity(total as usize);
    for _ in 0..total {
        for (c, w) in current.iter_mut().zip(&weights) {
            *c += w;
        }
        let (best, _) =
            current.iter().enumerate().max_by_key(|(i, c)| (**c, std::cmp::Reverse(*i))).expect("non-empty");
        current[best] -= total;
        slots.push(service.backends[best].addr);
    }
    slots
}

/// Weights divided by their greatest common divisor, then scaled so their sum fits in
/// `max_slots` (every backend keeps at least one slot; there are at most `max_slots`
/// backends, the config checks that).
fn fit_weights(backends: &[BackendSpec], max_slots: usize) -> Vec<i64> {
    let divisor = backends.iter().fold(0u16, |g, b| gcd(g, b.weight)).max(1);
    let mut weights: Vec<i64> = backends.iter().map(|b| i64::from(b.weight / divisor)).collect();
    let total: i64 = weights.iter().sum();
    let budget = max_slots.max(backends.len()) as i64;
    if total > budget {
        for w in &mut weights {
            *w = (*w * budget / total).max(1);
        }
        while weights.iter().sum::<i64>() > budget {
            let largest = weights.iter_mut().max().expect("non-empty");
            *largest -= 1;
        }
    }
    weights
}

fn gcd(a: u16, b: u16) -> u16 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Backends with their weights, read back from a slot layout (the inverse of [`layout`]
/// up to the common divisor): distinct addresses in order of first slot, weight = slots held.
pub fn backends_of(slots: &[SocketAddr]) -> Vec<BackendSpec> {
    let mut backends: Vec<BackendSpec> = Vec::new();
    for addr in slots {
        match backends.iter_mut().find(|b| b.addr == *addr) {
            Some(backend) => backend.weight = backend.weight.saturating_add(1),
            None => backends.push(BackendSpec::new(*addr)),
        }
    }
    backends
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Frontend, Protocol};

    fn weighted(weights: &[u16]) -> Service {
        Service {
            name: "w".into(),
            frontend: Frontend { vip: "240.0.0.1".parse().unwrap(), port: 80, protocol: Protocol::Tcp },
            algorithm: Algorithm::Weighted,
            affinity_secs: 0,
            outlier: crate::model::OutlierDetection::default(),
            backends: weights
                .iter()
                .enumerate()
                .map(|(i, w)| BackendSpec { addr: SocketAddr::from(([127, 0, 0, 1], 9000 + i as u16)), weight: *w })
                .collect(),
        }
    }

    fn ports(slots: &[SocketAddr]) -> Vec<u16> {
        slots.iter().map(|s| s.port() - 9000).collect()
    }

    #[test]
    fn weights_become_interleaved_slots() {
        assert_eq!(ports(&layout(&weighted(&[3, 1]), 1024)), [0, 0, 1, 0]);
        assert_eq!(ports(&layout(&weighted(&[5, 1, 1]), 1024)), [0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn common_divisors_are_removed() {
        assert_eq!(layout(&weighted(&[300, 100]), 1024).len(), 4);
    }

    #[test]
    fn large_weights_are_scaled_to_the_slot_limit_keeping_every_backend() {
        let slots = layout(&weighted(&[1000, 999, 1]), 16);
        assert!(slots.len() <= 16);
        let counts = backends_of(&slots);
        assert_eq!(counts.len(), 3, "every backend keeps a slot");
        assert!(counts[0].weight >= 7 && counts[1].weight >= 7, "{counts:?}");
    }

    #[test]
    fn other_algorithms_get_one_slot_per_backend() {
        let mut service = weighted(&[3, 1]);
        service.algorithm = Algorithm::RoundRobin;
        assert_eq!(ports(&layout(&service, 1024)), [0, 1]);
    }

    #[test]
    fn backends_of_inverts_layout() {
        let service = weighted(&[3, 1]);
        assert_eq!(backends_of(&layout(&service, 1024)), service.backends);
    }
}
