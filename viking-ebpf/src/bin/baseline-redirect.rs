//! The simplest possible VIP redirect, the benchmark's yardstick for Viking's `connect4`
//! (`cargo xtask bench`): one hash lookup keyed by the destination `(ip, port)` and a
//! rewrite on a hit. No backend choice, no counters, no socket state — whatever Viking's
//! program costs beyond this is the price of its features.
//!
//! Keys and values pack an IPv4 address and a port, both in network byte order exactly as
//! `bpf_sock_addr` holds them, into one `u64`: `ip << 32 | port`. The benchmark driver
//! (`tests/bench`) fills the map with the same packing.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod program {
    use aya_ebpf::{btf_maps::HashMap, macros::btf_map, macros::cgroup_sock_addr, programs::SockAddrContext};

    /// Destination `ip << 32 | port` -> new destination, same packing. The benchmark sets
    /// the real size at load time.
    #[btf_map(name = "BASELINE_REDIRECTS")]
    static REDIRECTS: HashMap<u64, u64, 1024> = HashMap::new();

    /// Rewrites a connect to a known `(ip, port)`; lets every connect proceed.
    #[cgroup_sock_addr(connect4)]
    pub fn baseline_conn4(ctx: SockAddrContext) -> i32 {
        // SAFETY: the kernel passes a valid context for the duration of the program.
        let addr = unsafe { &mut *ctx.sock_addr };
        // `user_port` holds the 16-bit network-order port in its low half.
        let key = (u64::from(addr.user_ip4) << 32) | u64::from(addr.user_port as u16);
        if let Some(target) = REDIRECTS.get_ptr(key) {
            // SAFETY: pointer from a successful lookup, read once by value.
            let target = unsafe { *target };
            addr.user_ip4 = (target >> 32) as u32;
            addr.user_port = u32::from(target as u16);
        }
        1
    }
}

/// A host build of this binary is empty: the program only exists for `bpfel-unknown-none`.
#[cfg(not(target_arch = "bpf"))]
fn main() {}

// The panic handler and the license live in the library.
#[cfg(target_arch = "bpf")]
use viking_ebpf as _;
