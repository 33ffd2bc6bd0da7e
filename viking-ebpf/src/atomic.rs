//! BPF atomic instructions. Stable Rust's `core::sync::atomic` has no read-modify-write
//! operations on the BPF target (it lacks `target_has_atomic`), so the two instructions
//! Viking needs are written as inline asm. The kernel verifier accepts both on map values
//! (fetch variants since 5.12).

use core::arch::asm;

/// Atomically adds `value` to `*counter` and returns the previous value
/// (`BPF_ATOMIC | BPF_ADD | BPF_FETCH`).
///
/// # Safety
/// `counter` must point to a live, 8-byte aligned map value.
#[inline(always)]
pub unsafe fn fetch_add(counter: *mut u64, value: u64) -> u64 {
    let mut previous = value;
    // SAFETY: the caller guarantees `counter` is a valid map value pointer.
    unsafe { asm!("{0} = atomic_fetch_add((u64 *)({1} + 0), {0})", inout(reg) previous, in(reg) counter) };
    previous
}

/// Atomically adds `value` (two's complement, so `u64::MAX` subtracts one) to `*counter`
/// (`BPF_ATOMIC | BPF_ADD`).
///
/// # Safety
/// `counter` must point to a live, 8-byte aligned map value.
#[inline(always)]
pub unsafe fn add(counter: *mut u64, value: u64) {
    // SAFETY: the caller guarantees `counter` is a valid map value pointer.
    unsafe { asm!("lock *(u64 *)({0} + 0) += {1}", in(reg) counter, in(reg) value) };
}
