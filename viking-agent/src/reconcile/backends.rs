//! Backend ids: one per distinct backend address, shared by every slot that names the
//! address (reference counted), written before the first slot names it and cleared after
//! the last one stops naming it.

use std::{collections::HashMap, net::SocketAddr};

use super::{ApplyError, ApplyFailure, ApplyReport, KernelWriter, LimitHit, ids::IdPool};
use crate::dataplane::tables::TableError;

/// Backend ids with reference counts (one per slot naming them).
#[derive(Debug)]
pub(super) struct BackendIds {
    pool: IdPool,
    by_addr: HashMap<SocketAddr, u32>,
    /// Every id in use. (One map for address and count: at 30,000 backends a second map
    /// was 1.5 MB of table.)
    in_use: HashMap<u32, InUse>,
}

/// An id in use.
#[derive(Debug)]
struct InUse {
    addr: SocketAddr,
    /// Slots naming it (0 for an adopted id no slot names yet).
    refs: u32,
}

impl BackendIds {
    /// No ids in use, room for `capacity`.
    pub(super) fn new(capacity: u32) -> Self {
        Self { pool: IdPool::new(capacity), by_addr: HashMap::new(), in_use: HashMap::new() }
    }

    /// Takes over an id the kernel already holds (no reference yet).
    pub(super) fn adopt(&mut self, id: u32, addr: SocketAddr) {
        self.pool.claim(id);
        self.by_addr.insert(addr, id);
        self.in_use.insert(id, InUse { addr, refs: 0 });
    }

    /// Counts one more slot naming an adopted id.
    pub(super) fn add_ref(&mut self, id: u32) {
        if let Some(entry) = self.in_use.get_mut(&id) {
            entry.refs += 1;
        }
    }

    /// The address of an id in use.
    pub(super) fn addr_of(&self, id: u32) -> Option<SocketAddr> {
        self.in_use.get(&id).map(|entry| entry.addr)
    }

    /// Distinct backend addresses with an id.
    pub(super) fn in_use(&self) -> usize {
        self.in_use.len()
    }

    /// Whether some slot names this address.
    pub(super) fn is_used(&self, addr: &SocketAddr) -> bool {
        self.by_addr.contains_key(addr)
    }

    /// Ids in use that no slot names (found so at adoption).
    pub(super) fn unreferenced(&self) -> Vec<u32> {
        self.in_use.iter().filter(|(_, entry)| entry.refs == 0).map(|(id, _)| *id).collect()
    }

    /// Whether some slot names this id.
    pub(super) fn is_referenced(&self, id: u32) -> bool {
        self.in_use.get(&id).is_some_and(|entry| entry.refs > 0)
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
            let id = match self.by_addr.get(addr) {
                Some(id) => *id,
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
        self.by_addr.insert(addr, id);
        self.in_use.insert(id, InUse { addr, refs: 0 });
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
        let left = self.in_use.get_mut(&id).map_or(0, |entry| {
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
        if let Some(entry) = self.in_use.remove(&id) {
            self.by_addr.remove(&entry.addr);
            report.released_backends.push(entry.addr);
        }
        self.pool.release(id);
        Ok(())
    }
}
