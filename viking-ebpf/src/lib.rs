//! Shared by the program binaries: the panic handler and the license. (The crate is also a
//! build-dependency of the agent and the benchmark, so cargo rebuilds them when the
//! programs change.)
#![no_std]

/// Any panic path left in a program becomes an infinite loop, which the kernel's verifier
/// rejects: a panic is a load-time error caught by the tests, never a runtime one.
#[cfg(all(target_arch = "bpf", not(test)))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

/// The programs' license: GPL-compatible, so they may call GPL-only helpers.
#[cfg(target_arch = "bpf")]
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
