//! Program entry points, one per cgroup hook.

use aya_ebpf::{
    helpers::generated::bpf_set_retval, macros::cgroup_sock_addr, programs::SockAddrContext,
};
use aya_log_ebpf::debug;
use viking_common::{IPPROTO_TCP, IPPROTO_UDP, Ip6, ServiceKey};

use crate::balancer::{Refusal, select_backend};

/// Return value of a `cgroup/sock_addr` program that lets the syscall proceed.
const ALLOW: i32 = 1;
/// Return value that fails the syscall (with the errno set by `bpf_set_retval`).
const REJECT: i32 = 0;
const ECONNREFUSED: i32 = 111;
const EAFNOSUPPORT: i32 = 97;

/// `connect()` on an IPv4 TCP or UDP socket: a VIP destination becomes a backend.
#[cgroup_sock_addr(connect4)]
pub fn viking_connect4(ctx: SockAddrContext) -> i32 {
    match try_connect4(&ctx) {
        Ok(()) => ALLOW,
        Err(refusal) => refuse(&ctx, refusal),
    }
}

fn try_connect4(ctx: &SockAddrContext) -> Result<(), Refusal> {
    // SAFETY: the kernel passes a valid context for the duration of the program.
    let sock = unsafe { &mut *ctx.sock_addr };
    let protocol = sock.protocol as u8;
    if protocol != IPPROTO_TCP && protocol != IPPROTO_UDP {
        return Ok(());
    }
    let frontend = ServiceKey::new(Ip6::from_v4_be(sock.user_ip4), sock.user_port as u16, protocol, 0);
    let Some(backend) = select_backend(&frontend)? else {
        return Ok(());
    };
    if !backend.address.is_v4_mapped() {
        return Err(Refusal::FamilyMismatch);
    }
    sock.user_ip4 = backend.address.v4_be();
    sock.user_port = u32::from(backend.port_be);
    Ok(())
}

#[inline(always)]
fn refuse(ctx: &SockAddrContext, refusal: Refusal) -> i32 {
    let errno = match refusal {
        Refusal::NoBackend => ECONNREFUSED,
        Refusal::FamilyMismatch => EAFNOSUPPORT,
    };
    // SAFETY: helper call with a plain integer; it only sets the syscall's return value.
    unsafe { bpf_set_retval(-errno) };
    // SAFETY: the kernel passes a valid context for the duration of the program.
    let sock = unsafe { &*ctx.sock_addr };
    debug!(ctx, "refused connect to {:i}:{}, errno {}", u32::from_be(sock.user_ip4), u16::from_be(sock.user_port as u16), errno);
    REJECT
}
