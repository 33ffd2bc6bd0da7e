//! VIPs for many services at once: one `PUT /v1/txn` claims the addresses and publishes
//! the records of up to [`SERVICES_PER_TXN`] services, each with check-and-set index 0
//! (create only if absent), atomically. A cold start of 10,000 services costs a few hundred
//! transactions instead of 40,000 single requests.
//!
//! A transaction is all or nothing: when one operation fails (another agent published
//! that service first, or holds that address), Consul rolls everything back and names the
//! failed operations. Those services are then allocated key by key with the careful path
//! of `vips::allocate`, which reads what is there and agrees with it; the others go again
//! in the next transaction. The guarantees are those of the single-key protocol: a service
//! never gets two VIPs, a VIP never names two services, and agents racing agree.

use std::collections::BTreeSet;

use base64::Engine as _;
use ipnet::IpNet;

use super::{
    client::{ConsulClient, ConsulError},
    vips::{self, AllocError, Allocation, Keys, candidate},
    wire::{TxnKvOp, TxnOp},
};

/// Services per transaction: two operations each, 64 operations in all — the limit of
/// Consul before 1.14 (1.14 raised it to 128), so that any Consul takes it.
pub const SERVICES_PER_TXN: usize = 32;

/// A service that needs a VIP, and the candidate to start from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The Consul service.
    pub name: String,
    /// The first candidate no other service is known to hold (see `VipTable`).
    pub first_probe: u64,
}

/// Allocates VIPs for `requests` (at most [`SERVICES_PER_TXN`]). Returns each service's
/// outcome; a transport error of the transaction itself fails the whole batch (retried by
/// the caller).
pub async fn allocate_batch(
    client: &ConsulClient,
    keys: &Keys,
    range: IpNet,
    requests: &[Request],
) -> Result<Vec<(String, Result<Allocation, AllocError>)>, ConsulError> {
    let mut pending: Vec<&Request> = requests.iter().collect();
    let mut outcomes = Vec::with_capacity(requests.len());
    while !pending.is_empty() {
        let vips: Vec<_> = pending.iter().map(|r| candidate(range, &r.name, r.first_probe)).collect();
        let ops: Vec<TxnOp> = pending
            .iter()
            .zip(&vips)
            .flat_map(|(request, vip)| {
                [create(keys.address(*vip), &request.name), create(keys.service(&request.name), &vip.to_string())]
            })
            .collect();
        let answer = client.txn(&ops).await?;
        for error in answer.errors.iter().flatten() {
            tracing::debug!("consul: VIP transaction rolled back: operation {}: {}", error.op_index, error.what);
        }
        let failed: BTreeSet<usize> = answer.errors.iter().flatten().map(|e| e.op_index / 2).collect();
        if failed.is_empty() {
            let results = answer.results.unwrap_or_default();
            for (i, (request, vip)) in pending.iter().zip(&vips).enumerate() {
                // The result of the record's write carries its ModifyIndex (for a
                // check-and-set release later).
                let record = results.get(2 * i + 1).and_then(|r| r.kv.as_ref());
                let outcome = match record {
                    Some(record) => Ok(Allocation { vip: *vip, modify_index: record.modify_index }),
                    None => Err(AllocError::Consul(ConsulError::Decode {
                        url: "/v1/txn".into(),
                        detail: format!("no result for operation {}", 2 * i + 1),
                    })),
                };
                outcomes.push((request.name.clone(), outcome));
            }
            return Ok(outcomes);
        }
        // Rolled back: the failed ones go the careful way, the rest again together.
        let mut next = Vec::with_capacity(pending.len());
        for (i, request) in pending.into_iter().enumerate() {
            if failed.contains(&i) {
                let outcome = vips::allocate(client, keys, range, &request.name, request.first_probe).await;
                outcomes.push((request.name.clone(), outcome));
            } else {
                next.push(request);
            }
        }
        pending = next;
    }
    Ok(outcomes)
}

/// A `cas` operation with index 0: writes `key` only if it does not exist.
fn create(key: String, value: &str) -> TxnOp {
    let value = Some(base64::engine::general_purpose::STANDARD.encode(value));
    TxnOp { kv: TxnKvOp { verb: "cas", key, value, index: Some(0) } }
}
