//! A network namespace owned by one test, demo or benchmark.

use std::{
    fs::File,
    io,
    os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd},
    path::{Path, PathBuf},
};

use rustix::{
    mount::UnmountFlags,
    net::{AddressFamily, SocketFlags, SocketType},
    thread::{LinkNameSpaceType, UnshareFlags},
};

/// Where `ip netns` keeps named namespaces.
const NETNS_RUN_DIR: &str = "/run/netns";

/// A new network namespace with only `lo`, up.
///
/// Anonymous ones live exactly as long as this value (the fd is their only reference), so
/// they disappear with a test even if it crashes. Named ones are also bind-mounted at
/// `/run/netns/<name>`, like `ip netns add`, and unmounted on drop.
#[derive(Debug)]
pub struct Netns {
    fd: OwnedFd,
    mount: Option<PathBuf>,
}

impl Netns {
    /// An anonymous namespace.
    pub fn anonymous() -> io::Result<Self> {
        Self::create(None)
    }

    /// A namespace reachable as `ip netns exec <name>` / `nsenter --net=/run/netns/<name>`.
    /// A leftover of the same name (from a crash) is replaced.
    pub fn named(name: &str) -> io::Result<Self> {
        let path = Path::new(NETNS_RUN_DIR).join(name);
        if path.exists() {
            unmount_and_remove(&path);
        }
        std::fs::create_dir_all(NETNS_RUN_DIR)?;
        Self::create(Some(path))
    }

    /// Creates the namespace from a short-lived thread (`unshare` affects only the calling
    /// thread), brings `lo` up and keeps an fd to it.
    fn create(mount: Option<PathBuf>) -> io::Result<Self> {
        std::thread::spawn(move || -> io::Result<Self> {
            // SAFETY: only the network namespace is unshared, never the fd table (`FILES`,
            // the flag that makes `unshare` unsafe), and only for this thread, which ends below.
            unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWNET) }?;
            set_loopback_up()?;
            if let Some(path) = &mount {
                bind_mount(Path::new("/proc/thread-self/ns/net"), path)?;
            }
            let file = File::open("/proc/thread-self/ns/net")?;
            Ok(Self { fd: file.into(), mount })
        })
        .join()
        .map_err(|_| io::Error::other("netns thread panicked"))?
    }

    /// Adds an address (e.g. `10.200.0.1/32`) to the namespace's `lo`, so servers can listen
    /// on a non-loopback address that still never leaves the namespace (`ip addr add`,
    /// run inside it).
    pub fn add_address(&self, cidr: &str) -> io::Result<()> {
        let mut command = std::process::Command::new("ip");
        command.args(["addr", "add", cidr, "dev", "lo"]);
        crate::process::place_netns_only(&mut command, self)?;
        let output = command.output()?;
        if !output.status.success() {
            return Err(io::Error::other(format!(
                "ip addr add {cidr}: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        Ok(())
    }

    /// Makes `address` a black hole inside the namespace: packets to it leave through a
    /// veth pair whose other end drops them (a permanent neighbour entry with a MAC nobody
    /// has), so a TCP connect to it sees no answer at all, as to a crashed host. `local` is
    /// the namespace's own address on that link (e.g. `10.77.0.1/24`, with `address` in
    /// the same subnet). Everything lives and dies with the namespace.
    pub fn add_black_hole(&self, local: &str, address: &str) -> io::Result<()> {
        let steps: [&[&str]; 5] = [
            &["link", "add", "viking-bh", "type", "veth", "peer", "name", "viking-bh-peer"],
            &["addr", "add", local, "dev", "viking-bh"],
            &["link", "set", "viking-bh", "up"],
            &["link", "set", "viking-bh-peer", "up"],
            &["neigh", "add", address, "lladdr", "02:00:00:00:00:02", "dev", "viking-bh", "nud", "permanent"],
        ];
        for args in steps {
            let mut command = std::process::Command::new("ip");
            command.args(args);
            crate::process::place_netns_only(&mut command, self)?;
            let output = command.output()?;
            if !output.status.success() {
                return Err(io::Error::other(format!(
                    "ip {}: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&output.stderr).trim()
                )));
            }
        }
        Ok(())
    }

    /// Runs `f` on a thread that has entered the namespace: sockets it creates (listeners,
    /// clients) belong to the namespace for their whole life, whichever thread uses them.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> io::Result<T> {
        let fd = self.fd.try_clone()?;
        std::thread::spawn(move || -> io::Result<T> {
            // Moves only this thread.
            rustix::thread::move_into_link_name_space(fd.as_fd(), Some(LinkNameSpaceType::Network))?;
            Ok(f())
        })
        .join()
        .map_err(|_| io::Error::other("thread in netns panicked"))?
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Some(path) = &self.mount {
            unmount_and_remove(path);
        }
    }
}

impl AsFd for Netns {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// `ip link set lo up` through the `SIOCSIFFLAGS` ioctl, in the calling thread's netns.
/// (rustix has no interface-flags call: the two ioctls stay raw.)
fn set_loopback_up() -> io::Result<()> {
    let socket = rustix::net::socket_with(AddressFamily::INET, SocketType::DGRAM, SocketFlags::CLOEXEC, None)?;
    // SAFETY: ifreq is plain old data.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: valid socket and ifreq; SIOCGIFFLAGS fills the flags.
    if unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: reading and writing the flags member of the union set just above.
    unsafe { req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short };
    // SAFETY: valid socket and ifreq.
    if unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn bind_mount(source: &Path, target: &Path) -> io::Result<()> {
    File::create(target)?;
    rustix::mount::mount_bind(source, target).map_err(|err| {
        let _ = std::fs::remove_file(target);
        err.into()
    })
}

fn unmount_and_remove(path: &Path) {
    // MNT_DETACH never blocks.
    let _ = rustix::mount::unmount(path, UnmountFlags::DETACH);
    let _ = std::fs::remove_file(path);
}
