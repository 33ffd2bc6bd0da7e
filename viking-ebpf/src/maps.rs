//! Every map of the kernel side, in one place.
//!
//! Sizes here are defaults; the agent sets the real `max_entries` at load time from its
//! `[limits]` config (`EbpfLoader::map_max_entries`). All maps are pinned by the agent
//! under `<pin-dir>/maps/<NAME>` so they outlive agent restarts.

use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    btf_maps::{Array, HashMap, PerCpuArray},
    macros::btf_map,
};
use viking_common::{Backend, ServiceKey, ServiceName, ServiceStats, ServiceValue, limits};

/// Frontends and their backend slots.
/// - key: [`ServiceKey`] (`vip`, `port`, `protocol`, `slot`)
/// - value: [`ServiceValue`]; slot 0 = service entry (count, algorithm, id), slot n = backend id
/// - writer: agent reconciler (backends before count; count before deletions)
/// - reader: `connect4`
/// - size: `limits.max_service_slots` (one entry per service + one per backend slot);
///   allocated on demand (`BPF_F_NO_PREALLOC`), so a large limit costs no memory up front.
#[btf_map(name = "VIKING_SERVICES")]
pub static SERVICES: HashMap<
    ServiceKey,
    ServiceValue,
    { limits::MAX_SERVICE_SLOTS as usize },
    { BPF_F_NO_PREALLOC as usize },
> = HashMap::new();

/// Backend addresses.
/// - key: backend id (`u32`); value: [`Backend`] (all zero = unused id)
/// - writer: agent reconciler (written before any slot names it, cleared after none does)
/// - reader: `connect4`
/// - size: `limits.max_backends` distinct backends; an array, so lookups are a bounds check
#[btf_map(name = "VIKING_BACKENDS")]
pub static BACKENDS: Array<Backend, { limits::MAX_BACKENDS as usize }> = Array::new();

/// Round-robin cursor per service.
/// - key: service id; value: next turn (`u32`, wraps)
/// - writer: `connect4` (read-increment-write); the agent never writes it
/// - reader: `connect4`
/// - size: `limits.max_services`
#[btf_map(name = "VIKING_RR_CURSORS")]
pub static RR_CURSORS: Array<u32, { limits::MAX_SERVICES as usize }> = Array::new();

/// Per-service counters, per CPU (no atomics on the hot path).
/// - key: service id; value: [`ServiceStats`]
/// - writer: `connect4`; reader: agent (`maps dump` sums over CPUs); the agent zeroes an id
///   when it assigns it to a new service
/// - size: `limits.max_services`
#[btf_map(name = "VIKING_SERVICE_STATS")]
pub static SERVICE_STATS: PerCpuArray<ServiceStats, { limits::MAX_SERVICES as usize }> =
    PerCpuArray::new();

/// Service names, for `maps dump` when no agent runs. No program reads it; it is declared
/// here so that it is created, sized and pinned with the others.
/// - key: service id; value: [`ServiceName`]
/// - writer and reader: agent
/// - size: `limits.max_services`, allocated on demand
#[btf_map(name = "VIKING_SERVICE_NAMES")]
pub static SERVICE_NAMES: HashMap<
    u32,
    ServiceName,
    { limits::MAX_SERVICES as usize },
    { BPF_F_NO_PREALLOC as usize },
> = HashMap::new();
