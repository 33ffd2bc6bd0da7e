//! Unconnected UDP: `sendto(VIP)` goes to a backend, and replies from that backend appear
//! to come from the VIP.

use aya_ebpf::{macros::cgroup_sock_addr, programs::SockAddrContext};
use viking_common::{IPPROTO_UDP, RevNatKey, RevNatValue};

use super::{ALLOW, peer::reverse_connected, verdict};
use crate::{
    balancer::{Pick, Refusal},
    maps::REV_NAT,
    redirect::resolve,
    sockaddr::{SockAddr, V4, V6},
    sockets,
};

/// `sendto`/`sendmsg` with an address on IPv4 UDP sockets.
#[cgroup_sock_addr(sendmsg4)]
pub fn viking_sendmsg4(ctx: SockAddrContext) -> i32 {
    verdict(&ctx, try_sendmsg::<V4>(&ctx))
}

/// The same on IPv6 UDP sockets.
#[cgroup_sock_addr(sendmsg6)]
pub fn viking_sendmsg6(ctx: SockAddrContext) -> i32 {
    verdict(&ctx, try_sendmsg::<V6>(&ctx))
}

/// `recvfrom`/`recvmsg` with an address on IPv4 UDP sockets.
#[cgroup_sock_addr(recvmsg4)]
pub fn viking_recvmsg4(ctx: SockAddrContext) -> i32 {
    reverse_source::<V4>(&ctx);
    ALLOW
}

/// The same on IPv6 UDP sockets.
#[cgroup_sock_addr(recvmsg6)]
pub fn viking_recvmsg6(ctx: SockAddrContext) -> i32 {
    reverse_source::<V6>(&ctx);
    ALLOW
}

fn try_sendmsg<const IPV6: bool>(ctx: &SockAddrContext) -> Result<(), Refusal> {
    let mut sock = SockAddr::<IPV6>::new(ctx);
    let vip = sock.address();
    let vip_port_be = sock.port_be();
    let cookie = sockets::cookie(ctx);
    let Some(choice) = resolve(&sock, IPPROTO_UDP, Pick::Sticky(cookie))? else {
        return Ok(());
    };
    sock.set(&choice.backend.address, choice.backend.port_be)?;
    let key =
        RevNatKey { cookie, backend: choice.backend.address, backend_port_be: choice.backend.port_be, _pad: [0; 6] };
    let value = RevNatValue { vip, vip_port_be, _pad: 0 };
    // Only write when it changed: a DNS client sends many datagrams to one VIP.
    // SAFETY: the value is read by copy right away.
    if unsafe { REV_NAT.get(&key) }.copied() != Some(value) {
        // A failed insert only means this reply will show the backend's address.
        let _ = REV_NAT.insert(&key, &value, 0);
    }
    Ok(())
}

/// Rewrites a datagram's source from a backend to the VIP the socket sent to: connected
/// sockets through their socket storage, unconnected ones through `REV_NAT`.
fn reverse_source<const IPV6: bool>(ctx: &SockAddrContext) {
    if reverse_connected::<IPV6>(ctx) {
        return;
    }
    let mut sock = SockAddr::<IPV6>::new(ctx);
    let cookie = sockets::cookie(ctx);
    let key = RevNatKey { cookie, backend: sock.address(), backend_port_be: sock.port_be(), _pad: [0; 6] };
    // SAFETY: the value is read by copy right away.
    if let Some(value) = unsafe { REV_NAT.get(&key) }.copied() {
        let _ = sock.set(&value.vip, value.vip_port_be);
    }
}
