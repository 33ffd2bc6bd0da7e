//! What the reconciler tells the rest of the agent about the installed services: what
//! the kernel serves, the services with their kernel ids (for the metrics endpoint), and
//! how full the maps are.

use std::net::SocketAddr;

use super::{KernelWriter, Reconciler};
use crate::model::{DesiredState, Frontend, ServedServices};

/// An installed service as the metrics endpoint sees it: its name, frontend and kernel ids.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceView {
    /// The service's name.
    pub name: String,
    /// Where clients connect.
    pub frontend: Frontend,
    /// Its id in the per-service maps.
    pub service_id: u32,
    /// Its distinct backends: id in the per-backend maps, and address.
    pub backends: Vec<(u32, SocketAddr)>,
}

impl<K: KernelWriter> Reconciler<K> {
    /// The maps, for tests that read what was written.
    #[cfg(test)]
    pub fn kernel(&self) -> &K {
        &self.kernel
    }

    /// What the kernel serves (after adoption: the previous agent's services).
    pub fn served(&self) -> &ServedServices {
        &self.served
    }

    /// What the kernel serves, as a desired state.
    pub fn installed_state(&self) -> DesiredState {
        DesiredState { services: self.served.iter().map(|s| (s.frontend, s.clone())).collect() }
    }

    /// Number of services installed.
    pub fn service_count(&self) -> usize {
        self.installed.len()
    }

    /// The installed services with their kernel ids, in frontend order, at most `limit`
    /// of them (what the metrics endpoint reads counters for).
    pub fn views(&self, limit: usize) -> Vec<ServiceView> {
        self.installed
            .iter()
            .take(limit)
            .map(|(frontend, installed)| {
                let mut backends: Vec<(u32, SocketAddr)> = Vec::new();
                for id in installed.slots.iter().flatten() {
                    if let Some(addr) = self.backends.addr_of(*id)
                        && !backends.iter().any(|(known, _)| known == id)
                    {
                        backends.push((*id, addr));
                    }
                }
                ServiceView {
                    name: installed.name.to_string(),
                    frontend: *frontend,
                    service_id: installed.service_id,
                    backends,
                }
            })
            .collect()
    }

    /// `SERVICES` entries in use (service entries and slots) with the map's size, and
    /// distinct backends in use with the `BACKENDS` size.
    pub fn fill(&self) -> ((u64, u32), (usize, u32)) {
        ((self.slots_used, self.limits.max_service_slots), (self.backends.in_use(), self.limits.max_backends))
    }

    /// Whether the kernel holds a service at `frontend`.
    pub fn is_installed(&self, frontend: &Frontend) -> bool {
        self.installed.contains_key(frontend)
    }
}
