//! Viking's kernel programs: a connect to a virtual service IP (VIP) is rewritten, in the
//! kernel, to a backend chosen from maps that the agent keeps in sync.
//!
//! Every entry point is a thin wrapper around a `try_` function returning `Result`, so each
//! error path is explicit; nothing here can panic.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
// Inline asm on the BPF target (for BPF atomics, see `atomic.rs`) is unstable; the eBPF
// build enables unstable features for its own crates only (viking-ebpf-build).
#![cfg_attr(target_arch = "bpf", feature(asm_experimental_arch))]

#[cfg(target_arch = "bpf")]
mod atomic;
#[cfg(target_arch = "bpf")]
mod balancer;
#[cfg(target_arch = "bpf")]
mod health;
#[cfg(target_arch = "bpf")]
mod maps;
#[cfg(target_arch = "bpf")]
mod monitor;
#[cfg(target_arch = "bpf")]
mod policy;
#[cfg(target_arch = "bpf")]
mod programs;
#[cfg(target_arch = "bpf")]
mod redirect;
#[cfg(target_arch = "bpf")]
mod sockaddr;
#[cfg(target_arch = "bpf")]
mod sockets;

/// A host build of this crate is empty: the programs only exist for `bpfel-unknown-none`.
#[cfg(not(target_arch = "bpf"))]
fn main() {}

// The panic handler and the license live in the library.
#[cfg(target_arch = "bpf")]
use viking_ebpf as _;
