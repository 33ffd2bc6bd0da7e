//! Program entry points, one module per kind of hook. Each entry is a thin wrapper that
//! calls a `try_` function returning `Result`, so every error path is explicit.

mod connect;
mod outcome;
mod peer;
mod release;
mod udp;

use aya_ebpf::{helpers::generated::bpf_set_retval, programs::SockAddrContext};
use aya_log_ebpf::debug;

use crate::balancer::Refusal;

/// Return value of a cgroup program that lets the syscall proceed.
const ALLOW: i32 = 1;
/// Return value that fails the syscall (with the errno set by `bpf_set_retval`).
const REJECT: i32 = 0;
const ECONNREFUSED: i32 = 111;
const EAFNOSUPPORT: i32 = 97;
const EACCES: i32 = 13;

/// Turns a `try_` result into the program's return value; a refusal fails the syscall at
/// once with a meaningful errno instead of the default `EPERM`.
#[inline(always)]
fn verdict(ctx: &SockAddrContext, result: Result<(), Refusal>) -> i32 {
    let Err(refusal) = result else {
        return ALLOW;
    };
    let errno = match refusal {
        Refusal::NoBackend => ECONNREFUSED,
        Refusal::FamilyMismatch => EAFNOSUPPORT,
        Refusal::Policy => EACCES,
    };
    // SAFETY: helper call with a plain integer; it only sets the syscall's return value.
    unsafe { bpf_set_retval(-errno) };
    debug!(ctx, "refused a connect to a VIP: errno {}", errno);
    REJECT
}
