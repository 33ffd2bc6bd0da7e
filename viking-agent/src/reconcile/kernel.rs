//! The writes the reconciler makes, as a trait: implemented by the real maps and, in unit
//! tests, by a model that checks the ordering rules after every write.

use std::{collections::HashSet, net::SocketAddr};

use viking_common::{OutlierPolicy, ServiceKey, ServiceValue};

use crate::dataplane::tables::{KernelTables, TableError};

/// The writes the reconciler makes.
pub trait KernelWriter {
    /// Writes a `SERVICES` entry.
    fn set_slot(&mut self, key: ServiceKey, value: ServiceValue) -> Result<(), TableError>;
    /// Deletes a `SERVICES` entry (missing is fine).
    fn delete_slot(&mut self, key: &ServiceKey) -> Result<(), TableError>;
    /// Writes the address of a newly assigned backend id (and zeroes its counters).
    fn set_backend(&mut self, id: u32, addr: SocketAddr) -> Result<(), TableError>;
    /// Clears a backend id.
    fn clear_backend(&mut self, id: u32) -> Result<(), TableError>;
    /// Prepares a fresh service id (zeroed counters, name).
    fn begin_service(&mut self, service_id: u32, name: &str) -> Result<(), TableError>;
    /// Writes the outlier policy of a service id.
    fn set_outlier(&mut self, service_id: u32, policy: OutlierPolicy) -> Result<(), TableError>;
    /// Renames a service id.
    fn set_name(&mut self, service_id: u32, name: &str) -> Result<(), TableError>;
    /// Forgets a released service id's name.
    fn delete_name(&mut self, service_id: u32) -> Result<(), TableError>;
    /// Drops client affinity entries of `service_id` whose backend is not in `keep`.
    fn forget_affinity(&mut self, service_id: u32, keep: &HashSet<u32>) -> Result<(), TableError>;
}

impl KernelWriter for KernelTables {
    fn set_slot(&mut self, key: ServiceKey, value: ServiceValue) -> Result<(), TableError> {
        KernelTables::set_slot(self, key, value)
    }
    fn delete_slot(&mut self, key: &ServiceKey) -> Result<(), TableError> {
        KernelTables::delete_slot(self, key)
    }
    fn set_backend(&mut self, id: u32, addr: SocketAddr) -> Result<(), TableError> {
        KernelTables::set_backend(self, id, addr)
    }
    fn clear_backend(&mut self, id: u32) -> Result<(), TableError> {
        KernelTables::clear_backend(self, id)
    }
    fn begin_service(&mut self, service_id: u32, name: &str) -> Result<(), TableError> {
        KernelTables::begin_service(self, service_id, name)
    }
    fn set_outlier(&mut self, service_id: u32, policy: OutlierPolicy) -> Result<(), TableError> {
        KernelTables::set_outlier(self, service_id, policy)
    }
    fn set_name(&mut self, service_id: u32, name: &str) -> Result<(), TableError> {
        KernelTables::set_name(self, service_id, name)
    }
    fn delete_name(&mut self, service_id: u32) -> Result<(), TableError> {
        KernelTables::delete_name(self, service_id)
    }
    fn forget_affinity(&mut self, service_id: u32, keep: &HashSet<u32>) -> Result<(), TableError> {
        KernelTables::forget_affinity(self, service_id, keep)
    }
}
