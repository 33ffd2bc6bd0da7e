use crate::Ip6;

/// Value of the `BACKENDS` array, indexed by backend id: where a connect is sent.
///
/// An all-zero entry (port 0) is an unused id; the kernel treats it as "no backend".
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Backend {
    /// The backend address (v4-mapped for IPv4).
    pub address: Ip6,
    /// The backend port, network byte order; never 0 in a used entry.
    pub port_be: u16,
    /// Explicit padding, always 0.
    pub _pad0: u16,
}

impl Backend {
    /// Whether the entry names a backend (unused ids are all zero).
    #[inline(always)]
    pub const fn is_set(&self) -> bool {
        self.port_be != 0
    }

    /// The backend port in host byte order.
    pub const fn port(&self) -> u16 {
        u16::from_be(self.port_be)
    }
}
