//! The destination (or peer, or source) address of a `bpf_sock_addr` context, read and
//! written the same way for IPv4 and IPv6 hooks.

use aya_ebpf::{bindings::bpf_sock_addr, programs::SockAddrContext};
use viking_common::{IPPROTO_TCP, IPPROTO_UDP, Ip6};

use crate::balancer::Refusal;

/// `IPV6 = false`: a `*4` hook, the address is `user_ip4`.
pub const V4: bool = false;
/// `IPV6 = true`: a `*6` hook, the address is `user_ip6` (v4-mapped for IPv4 on a
/// dual-stack socket).
pub const V6: bool = true;

/// The address fields of one hook invocation.
///
/// The family is a const parameter, not a runtime value: the verifier rejects any access
/// to `user_ip6` in a `*4` program (and the reverse) even on a branch that never runs, so
/// each program must be compiled for exactly one family.
pub struct SockAddr<'a, const IPV6: bool> {
    raw: &'a mut bpf_sock_addr,
}

impl<'a, const IPV6: bool> SockAddr<'a, IPV6> {
    /// Wraps the context of a hook of this family.
    #[inline(always)]
    pub fn new(ctx: &'a SockAddrContext) -> Self {
        // SAFETY: the kernel passes a valid context for the duration of the program.
        Self { raw: unsafe { &mut *ctx.sock_addr } }
    }

    /// `IPPROTO_TCP` or `IPPROTO_UDP`, the only protocols Viking balances.
    #[inline(always)]
    pub fn balanced_protocol(&self) -> Option<u8> {
        let protocol = self.raw.protocol as u8;
        (protocol == IPPROTO_TCP || protocol == IPPROTO_UDP).then_some(protocol)
    }

    /// The address (v4-mapped for IPv4).
    #[inline(always)]
    pub fn address(&self) -> Ip6 {
        if IPV6 {
            // One 4-byte load per word: the verifier only allows aligned 4-byte ctx access.
            Ip6 { words: [self.raw.user_ip6[0], self.raw.user_ip6[1], self.raw.user_ip6[2], self.raw.user_ip6[3]] }
        } else {
            Ip6::from_v4_be(self.raw.user_ip4)
        }
    }

    /// The port, network byte order.
    #[inline(always)]
    pub fn port_be(&self) -> u16 {
        self.raw.user_port as u16
    }

    /// Whether the context holds exactly `address:port_be`.
    #[inline(always)]
    pub fn is(&self, address: &Ip6, port_be: u16) -> bool {
        self.port_be() == port_be && self.address() == *address
    }

    /// Rewrites the address. An IPv4 hook can only take a v4-mapped address.
    #[inline(always)]
    pub fn set(&mut self, address: &Ip6, port_be: u16) -> Result<(), Refusal> {
        if IPV6 {
            self.raw.user_ip6[0] = address.words[0];
            self.raw.user_ip6[1] = address.words[1];
            self.raw.user_ip6[2] = address.words[2];
            self.raw.user_ip6[3] = address.words[3];
        } else {
            if !address.is_v4_mapped() {
                return Err(Refusal::FamilyMismatch);
            }
            self.raw.user_ip4 = address.v4_be();
        }
        self.raw.user_port = u32::from(port_be);
        Ok(())
    }
}
