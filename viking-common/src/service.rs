use crate::Ip6;

/// Key of the `SERVICES` map: a frontend (`vip`, `port`, `protocol`) and a slot.
///
/// Slot 0 of a frontend describes the service ([`ServiceValue::count`], algorithm, id, a
/// copy of the first backend ids); slots `1..=count` each name one backend. The agent
/// writes backend slots before it publishes them in slot 0, and lowers the count before it
/// deletes slots, so the kernel never reads a count larger than the slots written.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceKey {
    /// The virtual IP (v4-mapped for IPv4).
    pub vip: Ip6,
    /// The virtual port, network byte order.
    pub port_be: u16,
    /// `IPPROTO_TCP` or `IPPROTO_UDP`.
    pub protocol: u8,
    /// Explicit padding, always 0.
    pub _pad0: u8,
    /// 0 for the service entry, `1..=count` for backend slots.
    pub slot: u16,
    /// Explicit padding, always 0.
    pub _pad1: u16,
}

impl ServiceKey {
    /// The key of `slot` for a frontend.
    #[inline(always)]
    pub const fn new(vip: Ip6, port_be: u16, protocol: u8, slot: u16) -> Self {
        Self { vip, port_be, protocol, _pad0: 0, slot, _pad1: 0 }
    }

    /// The same frontend at another slot.
    #[inline(always)]
    pub const fn with_slot(&self, slot: u16) -> Self {
        Self { slot, ..*self }
    }

    /// The frontend's port in host byte order.
    pub const fn port(&self) -> u16 {
        u16::from_be(self.port_be)
    }
}

/// How the kernel picks a backend slot for a new connection.
#[repr(u8)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    /// Next slot in turn, from a per-service cursor in the kernel (atomic fetch-add).
    #[default]
    RoundRobin = 0,
    /// A uniformly random slot.
    Random = 1,
    /// Round-robin over slots the agent laid out by weight (smooth weighted round-robin:
    /// a backend of weight 3 holds 3 slots, interleaved with the others).
    Weighted = 2,
    /// The slot whose backend has the fewest open connections (counted in the kernel from
    /// connect to socket release); ties broken from a random start.
    LeastConn = 3,
}

impl Algorithm {
    /// Every algorithm, for parsing and help texts.
    pub const ALL: [Self; 4] = [Self::RoundRobin, Self::Random, Self::Weighted, Self::LeastConn];

    /// Decodes the byte stored in [`ServiceValue::algorithm`]; unknown values fall back
    /// to round-robin so that a newer agent's entry never breaks an older program.
    #[inline(always)]
    pub const fn from_u8(value: u8) -> Self {
        match value {
            1 => Self::Random,
            2 => Self::Weighted,
            3 => Self::LeastConn,
            _ => Self::RoundRobin,
        }
    }

    /// The name used in the config file and in `maps dump`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::RoundRobin => "round_robin",
            Self::Random => "random",
            Self::Weighted => "weighted",
            Self::LeastConn => "least_conn",
        }
    }
}

/// Serialized by its [name](Algorithm::name), as in the config file.
#[cfg(feature = "user")]
impl serde::Serialize for Algorithm {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

/// How many backend ids slot 0 carries a copy of ([`ServiceValue::first_backends`]).
pub const INLINE_SLOTS: usize = 4;

/// Value of the `SERVICES` map.
///
/// In slot 0: `count`, `algorithm`, `affinity_secs` and `service_id` describe the service
/// (`backend_id` is 0), and `first_backends` copies the backend ids of the first slots. In
/// slot `n >= 1`: `backend_id` names the backend (an index into `BACKENDS`) and
/// `service_id` repeats the service's id.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ServiceValue {
    /// Slot `n >= 1`: index of the backend in `BACKENDS`.
    pub backend_id: u32,
    /// Index of the service in the per-service arrays (cursor, counters).
    pub service_id: u32,
    /// Slot 0: number of backend slots; 0 means "refuse connects at once".
    pub count: u16,
    /// Slot 0: an [`Algorithm`] as `u8`.
    pub algorithm: u8,
    /// Explicit padding, always 0.
    pub _pad0: u8,
    /// Slot 0: client affinity window in seconds (same client cgroup, same backend); 0 = off.
    pub affinity_secs: u32,
    /// Slot 0: the backend ids of slots `1..=min(count, INLINE_SLOTS)`, as written in those
    /// slots when this entry was published (0 past `count`). A connect to a service with
    /// few backends then needs one hash lookup instead of two; larger slots are looked up.
    pub first_backends: [u32; INLINE_SLOTS],
}

impl ServiceValue {
    /// The service entry (slot 0) of a service whose slots `1..` hold `backend_ids`;
    /// `None` if there are more than `u16::MAX` of them.
    pub fn entry(service_id: u32, backend_ids: &[u32], algorithm: Algorithm, affinity_secs: u32) -> Option<Self> {
        let count = u16::try_from(backend_ids.len()).ok()?;
        let first_backends = Self::first_backends_of(backend_ids);
        Some(Self {
            backend_id: 0,
            service_id,
            count,
            algorithm: algorithm as u8,
            _pad0: 0,
            affinity_secs,
            first_backends,
        })
    }

    /// The [`first_backends`](Self::first_backends) copy for slots holding `backend_ids`.
    pub fn first_backends_of(backend_ids: &[u32]) -> [u32; INLINE_SLOTS] {
        let mut first = [0; INLINE_SLOTS];
        for (copy, id) in first.iter_mut().zip(backend_ids) {
            *copy = *id;
        }
        first
    }

    /// A backend slot's value: `backend_id`, of the service `service_id`.
    pub fn slot(service_id: u32, backend_id: u32) -> Self {
        Self { backend_id, service_id, ..Self::default() }
    }
}

/// Value of the `SERVICE_NAMES` map: a service's name, NUL-padded. Only the agent reads and
/// writes it; it lives in bpffs so that `maps dump` can name services with no agent running.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ServiceName {
    /// UTF-8 bytes, NUL-padded.
    pub bytes: [u8; 64],
}

impl ServiceName {
    /// The name, truncated to 64 bytes at a character boundary.
    pub fn new(name: &str) -> Self {
        let mut bytes = [0u8; 64];
        let mut end = name.len().min(64);
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        bytes[..end].copy_from_slice(&name.as_bytes()[..end]);
        Self { bytes }
    }

    /// The stored name (empty if it is not UTF-8).
    pub fn as_str(&self) -> &str {
        let len = self.bytes.iter().position(|b| *b == 0).unwrap_or(64);
        core::str::from_utf8(&self.bytes[..len]).unwrap_or("")
    }
}
