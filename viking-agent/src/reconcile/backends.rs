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
    addr_of: HashMap<u32, SocketAddr>,
    refs: HashMap<u32, usize>,
}

impl BackendIds {
    /// No ids in use, room for `capacity`.
    pub(super) fn new(capacity: u32) -> Self {
        Self { pool: IdPool::new(capacity), by_addr: HashMap::new(), addr_of: HashMap::new(), refs: HashMap::new() }
    }

    /// Takes over an id the kernel already holds (no reference yet).
    pub(super) fn adopt(&mut self, id: u32, addr: SocketAddr) {
        self.pool.claim(id);
        self.by_addr.insert(addr, id);
        self.addr_of.insert(id, addr);
    }

    /// Counts one more slot naming an adopted id.
    pub(super) fn add_ref(&mut self, id: u32) {
        *self.refs.entry(id).or_default() += 1;
    }

    /// The address of an id in use.
    pub(super) fn addr_of(&self, id: u32) -> Option<SocketAddr> {
        self.addr_of.get(&id).copied()
    }

    /// Distinct backend addresses with an id.
    pub(super) fn in_use(&self) -> usize {
        self.addr_of.len()
    }

    /// Whether some slot names this address.
    pub(super) fn is_used(&self, addr: &SocketAddr) -> bool {
        self.by_addr.contains_key(addr)
    }

    /// Ids in use that no slot names (found so at adoption).
    pub(super) fn unreferenced(&self) -> Vec<u32> {
        self.addr_of.keys().copied().filter(|id| !self.refs.contains_key(id)).collect()
    }

    /// Whether some slot names this id.
    pub(super) fn is_referenced(&self, id: u32) -> bool {
        self.refs.contains_key(&id)
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
            *self.refs.entry(id).or_default() += 1;
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
        self.addr_of.insert(id, addr);
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
        let refs = self.refs.entry(id).or_default();
        *refs = refs.saturating_sub(1);
        if *refs == 0 {
            self.refs.remove(&id);
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
        if let Some(addr) = self.addr_of.remove(&id) {
            self.by_addr.remove(&addr);
            report.released_backends.push(addr);
        }
        self.pool.release(id);
        Ok(())
    }
}
