/// Value of the per-CPU `SERVICE_STATS` array, indexed by service id. The agent sums the
/// CPUs' values when it reports them.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServiceStats {
    /// Connects (and unconnected sends) redirected to a backend.
    pub redirected: u64,
    /// Connects refused because the service had no backend.
    pub refused_no_backend: u64,
    /// Connects refused because the container did not declare the service (enforce mode).
    pub refused_by_policy: u64,
}

/// Value of the per-CPU `BACKEND_STATS` array, indexed by backend id.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BackendStats {
    /// Connects (and first unconnected sends of a socket) sent to this backend.
    pub connects: u64,
}
