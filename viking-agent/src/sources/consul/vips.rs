//! Stable, cluster-wide VIPs for Consul services, allocated in Consul's KV store with
//! check-and-set so that agents racing on many hosts always agree.
//!
//! Two records per allocation, each created with `?cas=0` (only if absent):
//! - `<prefix>/addresses/<vip>` = service name: claims the address; a second service can
//!   never claim it;
//! - `<prefix>/services/<name>` = VIP: the service's answer, which every agent reads.
//!
//! An agent claims the first free candidate (a hash of the name, then the next
//! addresses), then publishes it under the service. Many services are allocated at once in
//! one transaction (`allocator`); a service whose claim or record already exists is then
//! allocated key by key here: if another agent published first, its VIP wins and the loser
//! gives its claim back; a crash of an agent that wrote the claim but not the record (two
//! single writes, as older agents did) left a claim naming the service, which is reused. So
//! every service has at most one VIP and every VIP at most one service.

use std::{
    collections::HashMap,
    hash::{BuildHasher, RandomState},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use hashbrown::HashTable;
use ipnet::IpNet;

use super::{
    client::{ConsulClient, ConsulError},
    problems::ConsulProblem,
    wire::KvEntry,
};
use crate::model::ServiceName;

/// Candidates tried before giving up (the range is large; collisions are rare).
const MAX_PROBES: u64 = 256;

/// One allocation record as read from KV.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Allocation {
    /// The service's VIP.
    pub vip: IpAddr,
    /// ModifyIndex of `<prefix>/services/<name>`, for a check-and-set release.
    pub modify_index: u64,
}

/// The VIPs every agent agrees on, from `<prefix>/services/`, indexed both ways.
#[derive(Clone, Debug, Default)]
pub struct VipTable {
    by_service: HashMap<ServiceName, Allocation>,
    /// The services with a VIP, found by the VIP they have in `by_service` (a name per
    /// slot, not a VIP and a name).
    by_vip: HashTable<ServiceName>,
    hasher: RandomState,
}

/// Why a VIP could not be allocated.
#[derive(Debug, thiserror::Error)]
pub enum AllocError {
    /// Consul failed; retried later.
    #[error(transparent)]
    Consul(#[from] ConsulError),
    /// No free address among the candidates.
    #[error("no free VIP in {range} after {MAX_PROBES} candidates")]
    Exhausted {
        /// The allocation range.
        range: IpNet,
    },
}

/// The KV keys of one installation.
#[derive(Clone, Debug)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// Keys under `prefix`.
    pub fn new(prefix: &str) -> Self {
        Self { prefix: prefix.to_owned() }
    }

    /// The prefix watched for allocations.
    pub fn services_prefix(&self) -> String {
        format!("{}/services/", self.prefix)
    }

    /// The record publishing a service's VIP.
    pub fn service(&self, name: &str) -> String {
        format!("{}/services/{name}", self.prefix)
    }

    /// The record claiming an address for a service.
    pub fn address(&self, vip: IpAddr) -> String {
        format!("{}/addresses/{vip}", self.prefix)
    }
}

impl VipTable {
    /// Replaces the table with a listing of `<prefix>/services/` taken at KV index
    /// `listing_index`; allocations this agent recorded after that index are kept (the
    /// listing predates them). Records that are not a VIP inside `range` are reported and
    /// ignored (never given to the kernel). Returns the problems and the services whose VIP
    /// appeared, changed or went.
    pub fn load(
        &mut self,
        keys: &Keys,
        entries: &[KvEntry],
        range: IpNet,
        listing_index: u64,
        intern: impl Fn(&str) -> ServiceName,
    ) -> (Vec<ConsulProblem>, Vec<String>) {
        let prefix = keys.services_prefix();
        let mut problems = Vec::new();
        let mut listed: HashMap<ServiceName, Allocation> = HashMap::with_capacity(entries.len());
        for entry in entries {
            let Some(name) = entry.key.strip_prefix(&prefix) else { continue };
            match entry.text().and_then(|t| t.trim().parse::<IpAddr>().ok()) {
                Some(vip) if range.contains(&vip) => {
                    listed.insert(intern(name), Allocation { vip, modify_index: entry.modify_index });
                }
                _ => problems.push(ConsulProblem::VipRecord {
                    key: entry.key.clone(),
                    value: entry.text().unwrap_or_default(),
                    range,
                }),
            }
        }
        for (name, allocation) in &self.by_service {
            if allocation.modify_index > listing_index && !listed.contains_key(name) {
                listed.insert(name.clone(), *allocation);
            }
        }
        let mut changed: Vec<String> =
            self.by_service.keys().filter(|name| !listed.contains_key(*name)).map(|name| name.to_string()).collect();
        changed.extend(
            listed.iter().filter(|(name, a)| self.by_service.get(*name) != Some(a)).map(|(name, _)| name.to_string()),
        );
        self.by_service.clear();
        self.by_vip.clear();
        for (name, allocation) in listed {
            self.insert(name, allocation);
        }
        (problems, changed)
    }

    /// The VIP of a service, if allocated.
    pub fn get(&self, name: &str) -> Option<Allocation> {
        self.by_service.get(name).copied()
    }

    /// Records an allocation this agent just made or read.
    pub fn insert(&mut self, name: ServiceName, allocation: Allocation) {
        self.remove(&name);
        // A VIP names one service: a record claiming it for another one loses (the KV
        // address claim makes this impossible unless records are edited by hand).
        if let Some(other) = self.owner(allocation.vip).cloned() {
            self.remove(&other);
        }
        let hash = self.hasher.hash_one(allocation.vip);
        self.by_service.insert(name.clone(), allocation);
        let (by_service, hasher) = (&self.by_service, &self.hasher);
        self.by_vip.insert_unique(hash, name, |name| by_service.get(name).map_or(0, |a| hasher.hash_one(a.vip)));
    }

    /// Forgets a released allocation.
    pub fn remove(&mut self, name: &str) {
        if let Some(old) = self.by_service.remove(name)
            && let Ok(entry) = self.by_vip.find_entry(self.hasher.hash_one(old.vip), |found| &**found == name)
        {
            entry.remove();
        }
    }

    /// The service holding `vip`.
    fn owner(&self, vip: IpAddr) -> Option<&ServiceName> {
        let holds = |name: &ServiceName| self.by_service.get(name).is_some_and(|a| a.vip == vip);
        self.by_vip.find(self.hasher.hash_one(vip), holds)
    }

    /// The first candidate for `name` that no other service is known to hold (the KV
    /// check-and-set has the final word).
    pub fn first_free_probe(&self, range: IpNet, name: &str) -> u64 {
        (0..MAX_PROBES.min(range_size(range)))
            .find(|probe| self.owner(candidate(range, name, *probe)).is_none_or(|owner| &**owner == name))
            .unwrap_or(0)
    }
}

/// The `probe`-th candidate VIP of `name`: a hash of the name, then the next addresses, so
/// every agent tries the same first candidate.
pub fn candidate(range: IpNet, name: &str, probe: u64) -> IpAddr {
    let size = range_size(range);
    nth_host(range, fnv1a(name.as_bytes()).wrapping_add(probe) % size)
}

/// Allocates (or finds) the VIP of `name` one key at a time, trying candidates from
/// `first_probe`: the careful path for a service whose batched allocation met a claim or a
/// record (another agent's race, an earlier crash, a taken address).
pub async fn allocate(
    client: &ConsulClient,
    keys: &Keys,
    range: IpNet,
    name: &str,
    first_probe: u64,
) -> Result<Allocation, AllocError> {
    // Another agent may have published it already.
    if let Some(found) = published(client, keys, name).await? {
        return Ok(found);
    }
    for probe in first_probe..MAX_PROBES.min(range_size(range)) {
        let vip = candidate(range, name, probe);
        let address_key = keys.address(vip);
        if !client.kv_put_cas(&address_key, name, 0).await? {
            // Someone holds it: ours (an earlier attempt, or a racing agent) or taken.
            if read(client, &address_key).await?.is_none_or(|(owner, _)| owner != name) {
                continue;
            }
        }
        let service_key = keys.service(name);
        if client.kv_put_cas(&service_key, &vip.to_string(), 0).await? {
            let (_, modify_index) = read(client, &service_key).await?.unwrap_or_default();
            return Ok(Allocation { vip, modify_index });
        }
        // Another agent published first: use its VIP and give our claim back.
        let Some(winner) = published(client, keys, name).await? else {
            continue;
        };
        if winner.vip != vip {
            release_address(client, keys, vip, name).await?;
        }
        return Ok(winner);
    }
    Err(AllocError::Exhausted { range })
}

/// The published VIP record of `name`, if any.
async fn published(client: &ConsulClient, keys: &Keys, name: &str) -> Result<Option<Allocation>, ConsulError> {
    let service_key = keys.service(name);
    let Some((text, modify_index)) = read(client, &service_key).await? else {
        return Ok(None);
    };
    match text.trim().parse::<IpAddr>() {
        Ok(vip) => Ok(Some(Allocation { vip, modify_index })),
        Err(_) => Err(ConsulError::Decode { url: service_key, detail: format!("not an IP: {text:?}") }),
    }
}

/// Releases `name`'s VIP if its record is still the one seen (`allocation.modify_index`):
/// a concurrent re-allocation by another agent is never undone.
pub async fn release(
    client: &ConsulClient,
    keys: &Keys,
    name: &str,
    allocation: Allocation,
) -> Result<bool, ConsulError> {
    if !client.kv_delete_cas(&keys.service(name), allocation.modify_index).await? {
        return Ok(false);
    }
    release_address(client, keys, allocation.vip, name).await?;
    Ok(true)
}

/// Deletes the address claim of `vip` if `name` holds it.
pub async fn release_address(client: &ConsulClient, keys: &Keys, vip: IpAddr, name: &str) -> Result<(), ConsulError> {
    let key = keys.address(vip);
    if let Some((owner, index)) = read(client, &key).await?
        && owner == name
    {
        client.kv_delete_cas(&key, index).await?;
    }
    Ok(())
}

/// A key's text value and ModifyIndex.
async fn read(client: &ConsulClient, key: &str) -> Result<Option<(String, u64)>, ConsulError> {
    let entries = client.get::<Vec<KvEntry>>(&format!("/v1/kv/{key}"), &[], None).await?.body.unwrap_or_default();
    Ok(entries.into_iter().next().map(|e| (e.text().unwrap_or_default(), e.modify_index)))
}

/// Usable host addresses in `range` (network and broadcast excluded for IPv4).
fn range_size(range: IpNet) -> u64 {
    let bits = match range {
        IpNet::V4(net) => 32 - u32::from(net.prefix_len()),
        IpNet::V6(net) => 128 - u32::from(net.prefix_len()),
    };
    let total = if bits >= 63 { 1u64 << 62 } else { 1u64 << bits };
    match range {
        IpNet::V4(_) => total.saturating_sub(2).max(1),
        IpNet::V6(_) => total.saturating_sub(1).max(1),
    }
}

/// The `n`-th usable host address of `range` (counting from the one after the network).
fn nth_host(range: IpNet, n: u64) -> IpAddr {
    match range {
        IpNet::V4(net) => IpAddr::V4(Ipv4Addr::from(u32::from(net.network()).wrapping_add(1 + n as u32))),
        IpNet::V6(net) => IpAddr::V6(Ipv6Addr::from(u128::from(net.network()).wrapping_add(1 + u128::from(n)))),
    }
}

/// FNV-1a: a stable hash, so every agent tries the same first candidate for a name.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_are_usable_hosts_of_the_range() {
        let range: IpNet = "241.0.0.0/30".parse().unwrap();
        assert_eq!(range_size(range), 2);
        assert_eq!(nth_host(range, 0), "241.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(nth_host(range, 1), "241.0.0.2".parse::<IpAddr>().unwrap());
        let v6: IpNet = "fd00::/120".parse().unwrap();
        assert_eq!(nth_host(v6, 0), "fd00::1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn the_first_candidate_is_the_same_on_every_host() {
        assert_eq!(fnv1a(b"web"), fnv1a(b"web"));
        assert_ne!(fnv1a(b"web"), fnv1a(b"api"));
    }

    #[test]
    fn records_outside_the_range_are_rejected() {
        use base64::Engine as _;
        let keys = Keys::new("viking");
        let encode = |s: &str| Some(base64::engine::general_purpose::STANDARD.encode(s));
        let entries = vec![
            KvEntry { key: "viking/services/web".into(), value: encode("241.0.0.7"), modify_index: 5 },
            KvEntry { key: "viking/services/bad".into(), value: encode("10.0.0.1"), modify_index: 6 },
            KvEntry { key: "viking/services/junk".into(), value: encode("hello"), modify_index: 7 },
        ];
        let mut table = VipTable::default();
        let (problems, changed) =
            table.load(&keys, &entries, "241.0.0.0/8".parse().unwrap(), 7, |name: &str| name.into());
        assert_eq!(changed, ["web"]);
        assert_eq!(table.get("web").map(|a| a.vip), Some("241.0.0.7".parse().unwrap()));
        assert!(table.get("bad").is_none() && table.get("junk").is_none());
        let range: IpNet = "241.0.0.0/8".parse().unwrap();
        let record = |key: &str, value: &str| ConsulProblem::VipRecord { key: key.into(), value: value.into(), range };
        assert_eq!(problems, [record("viking/services/bad", "10.0.0.1"), record("viking/services/junk", "hello")]);
    }
}

#[cfg(test)]
mod table_tests {
    use super::*;

    #[test]
    fn a_listing_older_than_an_own_allocation_does_not_drop_it() {
        let range: IpNet = "241.0.0.0/8".parse().unwrap();
        let mut table = VipTable::default();
        table.insert("web".into(), Allocation { vip: "241.0.0.7".parse().unwrap(), modify_index: 20 });
        let (_, changed) = table.load(&Keys::new("viking"), &[], range, 19, |name: &str| name.into());
        assert!(changed.is_empty() && table.get("web").is_some(), "the listing predates it");
        let (_, changed) = table.load(&Keys::new("viking"), &[], range, 21, |name: &str| name.into());
        assert_eq!((changed, table.get("web")), (vec!["web".to_owned()], None), "released meanwhile");
    }

    #[test]
    fn the_first_free_probe_skips_vips_held_by_others() {
        let range: IpNet = "241.0.0.0/8".parse().unwrap();
        let mut table = VipTable::default();
        assert_eq!(table.first_free_probe(range, "web"), 0);
        table.insert("other".into(), Allocation { vip: candidate(range, "web", 0), modify_index: 1 });
        assert_eq!(table.first_free_probe(range, "web"), 1);
        table.insert("web".into(), Allocation { vip: candidate(range, "web", 1), modify_index: 2 });
        assert_eq!(table.first_free_probe(range, "web"), 1, "its own VIP is free for it");
        table.insert("third".into(), Allocation { vip: candidate(range, "web", 1), modify_index: 3 });
        assert_eq!(table.get("web"), None, "one VIP, one service");
    }
}
