//! Backend ids: one per distinct backend address, shared by every slot that names the
//! address (reference counted), written before the first slot names it and cleared after
//! the last one stops naming it.

use std::{
    hash::{BuildHasher, RandomState},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
};

use hashbrown::HashTable;

use super::{ApplyError, ApplyFailure, ApplyReport, KernelWriter, LimitHit, ids::IdPool};
use crate::dataplane::tables::TableError;

/// Backend ids with reference counts (one per slot naming them).
///
/// These are the reconciler's largest tables (300,000 backends at 100k services), so
/// addresses are packed (19 bytes, where a `SocketAddr` takes 32), the ids in use are a
/// vector indexed by id, and the index by address holds only ids, hashed by the address
/// they have in that vector: two hash maps of 41 MB became 12 MB.
#[derive(Debug)]
pub(super) struct BackendIds {
    pool: IdPool,
    /// The ids in use, found by their address in `in_use`.
    by_addr: HashTable<u32>,
    hasher: RandomState,
    /// Indexed by id: the ids in use (`None`: free).
    in_use: Vec<Option<InUse>>,
    /// How many ids are in use.
    count: usize,
}

/// An id in use.
#[derive(Clone, Copy, Debug)]
struct InUse {
    addr: PackedAddr,
    /// Slots naming it (0 for an adopted id no slot names yet).
    refs: u32,
}

/// A backend address in 19 bytes, byte-aligned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct PackedAddr {
    ip: [u8; 16],
    port: [u8; 2],
    v6: bool,
}

impl From<SocketAddr> for PackedAddr {
    fn from(addr: SocketAddr) -> Self {
        let (ip, v6) = match addr.ip() {
            IpAddr::V4(ip) => (ip.to_ipv6_mapped().octets(), false),
            IpAddr::V6(ip) => (ip.octets(), true),
        };
        Self { ip, port: addr.port().to_be_bytes(), v6 }
    }
}

impl From<PackedAddr> for SocketAddr {
    fn from(addr: PackedAddr) -> Self {
        let ip = if addr.v6 {
            IpAddr::V6(Ipv6Addr::from(addr.ip))
        } else {
            let [.., a, b, c, d] = addr.ip;
            IpAddr::V4(Ipv4Addr::new(a, b, c, d))
        };
        SocketAddr::new(ip, u16::from_be_bytes(addr.port))
    }
}

impl BackendIds {
    /// No ids in use, room for `capacity`.
    pub(super) fn new(capacity: u32) -> Self {
        Self {
            pool: IdPool::new(capacity),
            by_addr: HashTable::new(),
            hasher: RandomState::new(),
            in_use: Vec::new(),
            count: 0,
        }
    }

    /// Takes over an id the kernel already holds (no reference yet).
    pub(super) fn adopt(&mut self, id: u32, addr: SocketAddr) {
        self.pool.claim(id);
        self.insert(id, addr.into());
    }

    /// Counts one more slot naming an adopted id.
    pub(super) fn add_ref(&mut self, id: u32) {
        if let Some(entry) = self.entry_mut(id) {
            entry.refs += 1;
        }
    }

    /// The address of an id in use.
    pub(super) fn addr_of(&self, id: u32) -> Option<SocketAddr> {
        self.entry(id).map(|entry| entry.addr.into())
    }

    /// Distinct backend addresses with an id.
    pub(super) fn in_use(&self) -> usize {
        self.count
    }

    /// Whether some slot names this address.
    pub(super) fn is_used(&self, addr: &SocketAddr) -> bool {
        self.id_of(PackedAddr::from(*addr)).is_some()
    }

    /// The id of an address.
    fn id_of(&self, addr: PackedAddr) -> Option<u32> {
        let hash = self.hasher.hash_one(addr);
        self.by_addr.find(hash, |id| self.entry(*id).is_some_and(|entry| entry.addr == addr)).copied()
    }

    /// Ids in use that no slot names (found so at adoption).
    pub(super) fn unreferenced(&self) -> Vec<u32> {
        let ids = (0u32..).zip(&self.in_use);
        ids.filter(|(_, entry)| entry.is_some_and(|entry| entry.refs == 0)).map(|(id, _)| id).collect()
    }

    /// Whether some slot names this id.
    pub(super) fn is_referenced(&self, id: u32) -> bool {
        self.entry(id).is_some_and(|entry| entry.refs > 0)
    }

    fn entry(&self, id: u32) -> Option<&InUse> {
        self.in_use.get(id as usize)?.as_ref()
    }

    fn entry_mut(&mut self, id: u32) -> Option<&mut InUse> {
        self.in_use.get_mut(id as usize)?.as_mut()
    }

    fn insert(&mut self, id: u32, addr: PackedAddr) {
        let index = id as usize;
        if index >= self.in_use.len() {
            // Grows by a quarter, not double: ids are handed out in order, so the vector
            // grows one id at a time to the number of backends.
            let needed = index + 1 - self.in_use.len();
            if self.in_use.capacity() - self.in_use.len() < needed {
                self.in_use.reserve_exact(needed.max(self.in_use.len() / 4));
            }
            self.in_use.resize(index + 1, None);
        }
        match self.in_use[index].replace(InUse { addr, refs: 0 }) {
            None => self.count += 1,
            Some(old) => self.unindex(id, old.addr),
        }
        let (in_use, hasher) = (&self.in_use, &self.hasher);
        let rehash =
            |id: &u32| in_use.get(*id as usize).and_then(Option::as_ref).map_or(0, |e| hasher.hash_one(e.addr));
        self.by_addr.insert_unique(self.hasher.hash_one(addr), id, rehash);
    }

    fn unindex(&mut self, id: u32, addr: PackedAddr) {
        if let Ok(entry) = self.by_addr.find_entry(self.hasher.hash_one(addr), |found| *found == id) {
            entry.remove();
        }
    }

    /// Ids for the slots' addresses, one more reference per slot; new addresses are
    /// written to the kernel first. On failure nothing is kept.
    pub(super) fn acquire(
        &mut self,
        kernel: &mut impl KernelWriter,
        addrs: &[SocketAddr],
        report: &mut ApplyReport,
    ) -> Result<Vec<u32>, ApplyError> {
        let mut ids = Vec::with_capacity(addrs.len());
        for addr in addrs {
            let id = match self.id_of(PackedAddr::from(*addr)) {
                Some(id) => id,
                None => match self.write_new(kernel, *addr) {
                    Ok(id) => {
                        report.writes += 1;
                        id
                    }
                    Err(err) => {
                        self.release_all(kernel, &ids, report);
                        return Err(err);
                    }
                },
            };
            self.add_ref(id);
            ids.push(id);
        }
        Ok(ids)
    }

    fn write_new(&mut self, kernel: &mut impl KernelWriter, addr: SocketAddr) -> Result<u32, ApplyError> {
        let capacity = self.pool.capacity();
        let id = self.pool.allocate().ok_or(LimitHit::Backends(capacity))?;
        if let Err(err) = kernel.set_backend(id, addr) {
            self.pool.release(id);
            return Err(err.into());
        }
        self.insert(id, addr.into());
        Ok(id)
    }

    /// Releases one reference per id; a clearing failure is reported (the id is then kept,
    /// unusable, rather than handed out while the kernel still has it).
    pub(super) fn release_all(&mut self, kernel: &mut impl KernelWriter, ids: &[u32], report: &mut ApplyReport) {
        for id in ids {
            if let Err(error) = self.release(kernel, *id, report) {
                report.failed.push(ApplyFailure::Backend { id: *id, error });
            }
        }
    }

    /// Releases one reference; the last one clears the id in the kernel.
    pub(super) fn release(
        &mut self,
        kernel: &mut impl KernelWriter,
        id: u32,
        report: &mut ApplyReport,
    ) -> Result<(), TableError> {
        let left = self.entry_mut(id).map_or(0, |entry| {
            entry.refs = entry.refs.saturating_sub(1);
            entry.refs
        });
        if left == 0 {
            self.free(kernel, id, report)?;
        }
        Ok(())
    }

    /// Clears an id nobody names.
    pub(super) fn free(
        &mut self,
        kernel: &mut impl KernelWriter,
        id: u32,
        report: &mut ApplyReport,
    ) -> Result<(), TableError> {
        kernel.clear_backend(id)?;
        report.writes += 1;
        if let Some(entry) = self.in_use.get_mut(id as usize).and_then(Option::take) {
            self.count -= 1;
            self.unindex(id, entry.addr);
            report.released_backends.push(entry.addr.into());
        }
        self.pool.release(id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_addresses_round_trip() {
        for addr in ["10.0.0.1:80", "0.0.0.0:1", "[::1]:65535", "[::ffff:10.0.0.1]:443", "[fd00::5]:8080"] {
            let addr: SocketAddr = addr.parse().unwrap();
            assert_eq!(SocketAddr::from(PackedAddr::from(addr)), addr, "{addr}");
        }
    }
}
