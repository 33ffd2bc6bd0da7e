//! The kernel object, built by `build.rs` (viking-ebpf-build) and embedded in the agent binary, so
//! `target/release/viking-agent` is self-contained.

/// The eBPF ELF object with BTF, 8-byte aligned as the loader requires.
pub static BYTES: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/viking-ebpf"));
