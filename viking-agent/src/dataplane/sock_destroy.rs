//! Closing UDP sockets still connected to a backend that left every service.
//!
//! A connected UDP socket never passes through `connect4` again: its datagrams go straight
//! to the backend chosen at connect time. When that backend is removed, the agent destroys
//! such sockets (`SOCK_DESTROY` over the `NETLINK_SOCK_DIAG` socket, as `ss -K` does); the
//! application's next send or receive fails with `ECONNABORTED`, and its reconnect to the
//! VIP picks a live backend. TCP connections are left alone: they end by themselves.
//!
//! Sockets live in network namespaces; the agent enters the namespace of every process in
//! the attached cgroup tree (plus its own) on a short-lived thread, since `setns` affects
//! only the calling thread.
//!
//! Layouts follow `include/uapi/linux/inet_diag.h` and `linux/netlink.h`.

use std::{
    collections::BTreeMap,
    fs::File,
    io,
    mem::size_of,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    os::{
        fd::{AsFd, OwnedFd},
        unix::fs::MetadataExt,
    },
    path::{Path, PathBuf},
};

use rustix::{
    net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType, netlink},
    thread::LinkNameSpaceType,
};

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const SOCK_DESTROY: u16 = 21;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
/// How deep the cgroup tree is walked for processes (containers sit 1-3 levels down).
const MAX_CGROUP_DEPTH: usize = 8;

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct NlMsgHdr {
    len: u32,
    kind: u16,
    flags: u16,
    seq: u32,
    pid: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct InetDiagSockId {
    sport: u16,
    dport: u16,
    src: [u32; 4],
    dst: [u32; 4],
    interface: u32,
    cookie: [u32; 2],
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct InetDiagReqV2 {
    family: u8,
    protocol: u8,
    ext: u8,
    pad: u8,
    states: u32,
    id: InetDiagSockId,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct InetDiagMsg {
    family: u8,
    state: u8,
    timer: u8,
    retrans: u8,
    id: InetDiagSockId,
    expires: u32,
    rqueue: u32,
    wqueue: u32,
    uid: u32,
    inode: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Request {
    header: NlMsgHdr,
    body: InetDiagReqV2,
}

/// Destroys the connected UDP sockets whose peer is one of `peers`, in the network
/// namespaces of the processes under `cgroup` and of the agent. Returns how many.
pub fn destroy_udp_connected_to(cgroup: &Path, peers: &[SocketAddr]) -> io::Result<usize> {
    if peers.is_empty() {
        return Ok(0);
    }
    let mut destroyed = 0;
    for netns in namespaces(cgroup) {
        let peers = peers.to_vec();
        destroyed += std::thread::spawn(move || -> io::Result<usize> {
            let file = File::open(&netns)?;
            // Moves only this short-lived thread.
            rustix::thread::move_into_link_name_space(file.as_fd(), Some(LinkNameSpaceType::Network))?;
            destroy_in_current_netns(&peers)
        })
        .join()
        .map_err(|_| io::Error::other("sock_destroy thread panicked"))??;
    }
    Ok(destroyed)
}

/// One `/proc/<pid>/ns/net` path per distinct namespace of the cgroup tree's processes,
/// the agent's own first.
fn namespaces(cgroup: &Path) -> Vec<PathBuf> {
    let mut by_inode: BTreeMap<(u64, u64), PathBuf> = BTreeMap::new();
    let mut add = |path: PathBuf| {
        if let Ok(meta) = std::fs::metadata(&path) {
            by_inode.entry((meta.dev(), meta.ino())).or_insert(path);
        }
    };
    add(PathBuf::from("/proc/self/ns/net"));
    let mut dirs = vec![(cgroup.to_path_buf(), 0)];
    while let Some((dir, depth)) = dirs.pop() {
        for pid in std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default().lines() {
            add(Path::new("/proc").join(pid.trim()).join("ns/net"));
        }
        if depth < MAX_CGROUP_DEPTH {
            let children = std::fs::read_dir(&dir).into_iter().flatten().flatten();
            dirs.extend(children.filter(|e| e.path().is_dir()).map(|e| (e.path(), depth + 1)));
        }
    }
    by_inode.into_values().collect()
}

fn destroy_in_current_netns(peers: &[SocketAddr]) -> io::Result<usize> {
    let sock = rustix::net::socket_with(
        AddressFamily::NETLINK,
        SocketType::DGRAM,
        SocketFlags::CLOEXEC,
        Some(netlink::SOCK_DIAG),
    )?;
    let mut destroyed = 0;
    for family in [libc::AF_INET as u8, libc::AF_INET6 as u8] {
        let doomed: Vec<InetDiagSockId> =
            dump_udp(&sock, family)?.into_iter().filter(|id| peers.contains(&peer_of(family, id))).collect();
        for id in doomed {
            match destroy(&sock, family, id) {
                Ok(()) => destroyed += 1,
                // Closed meanwhile.
                Err(err) if err.raw_os_error() == Some(libc::ENOENT) => {}
                Err(err) => return Err(err),
            }
        }
    }
    Ok(destroyed)
}

fn peer_of(family: u8, id: &InetDiagSockId) -> SocketAddr {
    let port = u16::from_be(id.dport);
    let ip = if family == libc::AF_INET as u8 {
        IpAddr::V4(Ipv4Addr::from(id.dst[0].to_ne_bytes()))
    } else {
        let mut octets = [0u8; 16];
        for (chunk, word) in octets.chunks_mut(4).zip(id.dst) {
            chunk.copy_from_slice(&word.to_ne_bytes());
        }
        let v6 = Ipv6Addr::from(octets);
        v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
    };
    SocketAddr::new(ip, port)
}

fn send(sock: &OwnedFd, request: &Request) -> io::Result<()> {
    // SAFETY: `Request` is repr(C) of integers only and has no padding (its size is the sum
    // of its fields', checked in `layouts_match_the_kernel_headers`), so all of its
    // `size_of::<Request>()` bytes are initialized; the slice lives no longer than `request`.
    let bytes = unsafe { std::slice::from_raw_parts((request as *const Request).cast::<u8>(), size_of::<Request>()) };
    rustix::net::send(sock, bytes, SendFlags::empty())?;
    Ok(())
}

fn request(kind: u16, flags: u16, family: u8, id: InetDiagSockId) -> Request {
    Request {
        header: NlMsgHdr { len: size_of::<Request>() as u32, kind, flags, seq: 1, pid: 0 },
        body: InetDiagReqV2 { family, protocol: libc::IPPROTO_UDP as u8, ext: 0, pad: 0, states: u32::MAX, id },
    }
}

/// Every UDP socket of `family` in the current namespace that has a peer.
fn dump_udp(sock: &OwnedFd, family: u8) -> io::Result<Vec<InetDiagSockId>> {
    send(sock, &request(SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, family, InetDiagSockId::default()))?;
    let mut found = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        for message in receive(sock, &mut buf)? {
            match message {
                Message::Done => return Ok(found),
                Message::Error(0) => {}
                Message::Error(errno) => return Err(io::Error::from_raw_os_error(errno)),
                Message::Socket(msg) if msg.id.dport != 0 => found.push(msg.id),
                Message::Socket(_) => {}
            }
        }
    }
}

fn destroy(sock: &OwnedFd, family: u8, id: InetDiagSockId) -> io::Result<()> {
    send(sock, &request(SOCK_DESTROY, NLM_F_REQUEST | NLM_F_ACK, family, id))?;
    let mut buf = vec![0u8; 4096];
    for message in receive(sock, &mut buf)? {
        if let Message::Error(errno) = message {
            return if errno == 0 { Ok(()) } else { Err(io::Error::from_raw_os_error(errno)) };
        }
    }
    Ok(())
}

enum Message {
    Done,
    Error(i32),
    Socket(InetDiagMsg),
}

/// Reads one datagram and splits it into netlink messages.
fn receive(sock: &OwnedFd, buf: &mut [u8]) -> io::Result<Vec<Message>> {
    let (received, _) = rustix::net::recv(sock, &mut *buf, RecvFlags::empty())?;
    let mut messages = Vec::new();
    let mut rest = &buf[..received];
    while rest.len() >= size_of::<NlMsgHdr>() {
        let header: NlMsgHdr = read(rest);
        let len = (header.len as usize).clamp(size_of::<NlMsgHdr>(), rest.len());
        let payload = &rest[size_of::<NlMsgHdr>()..len];
        messages.push(match header.kind {
            NLMSG_DONE => Message::Done,
            // nlmsgerr starts with a negative errno (0 = ack).
            NLMSG_ERROR if payload.len() >= 4 => Message::Error(-read::<i32>(payload)),
            SOCK_DIAG_BY_FAMILY if payload.len() >= size_of::<InetDiagMsg>() => Message::Socket(read(payload)),
            _ => Message::Error(libc::EPROTO),
        });
        // Messages are 4-byte aligned.
        rest = &rest[((len + 3) & !3).min(rest.len())..];
    }
    Ok(messages)
}

/// Copies a plain repr(C) value out of the start of `bytes` (which is long enough).
fn read<T: Copy + Default>(bytes: &[u8]) -> T {
    let mut value = T::default();
    let len = size_of::<T>().min(bytes.len());
    // SAFETY: T is plain old data (integers only); at most size_of::<T>() bytes are copied
    // into it, from a slice at least that long.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), (&mut value as *mut T).cast::<u8>(), len) };
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_match_the_kernel_headers() {
        assert_eq!(size_of::<NlMsgHdr>(), 16);
        assert_eq!(size_of::<InetDiagSockId>(), 48);
        assert_eq!(size_of::<InetDiagReqV2>(), 56);
        assert_eq!(size_of::<InetDiagMsg>(), 72);
        // No padding: `send` passes every byte of a request to the kernel.
        assert_eq!(size_of::<Request>(), size_of::<NlMsgHdr>() + size_of::<InetDiagReqV2>());
    }

    #[test]
    fn v4_mapped_peers_of_v6_sockets_read_as_v4() {
        let mut id = InetDiagSockId { dport: 53u16.to_be(), ..Default::default() };
        id.dst = [0, 0, u32::from_ne_bytes([0, 0, 0xff, 0xff]), u32::from_ne_bytes([127, 0, 0, 1])];
        assert_eq!(peer_of(libc::AF_INET6 as u8, &id), "127.0.0.1:53".parse().unwrap());
    }
}
