//! A network namespace owned by one test, held by an fd only.

use std::{
    fs::File,
    io,
    os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd},
};

/// A new network namespace with only `lo`, up. It lives as long as this value (the fd is
/// its only reference), so it disappears with the test even on a crash.
#[derive(Debug)]
pub struct TestNetns {
    fd: OwnedFd,
}

impl TestNetns {
    /// Creates the namespace from a short-lived thread (`unshare` affects only the calling
    /// thread), brings `lo` up and keeps an fd to it.
    pub fn new() -> io::Result<Self> {
        std::thread::spawn(|| -> io::Result<Self> {
            // SAFETY: unshare only changes this thread's namespaces; the thread ends below.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            set_loopback_up()?;
            let file = File::open("/proc/thread-self/ns/net")?;
            Ok(Self { fd: file.into() })
        })
        .join()
        .map_err(|_| io::Error::other("netns thread panicked"))?
    }

    /// Runs `f` on a thread that has entered the namespace: sockets it creates (listeners,
    /// clients) belong to the namespace for their whole life, whichever thread uses them.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> io::Result<T> {
        let fd = self.fd.try_clone()?;
        std::thread::spawn(move || -> io::Result<T> {
            // SAFETY: setns with a valid netns fd only affects this thread.
            if unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(f())
        })
        .join()
        .map_err(|_| io::Error::other("thread in netns panicked"))?
    }
}

impl AsFd for TestNetns {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// `ip link set lo up` through the `SIOCSIFFLAGS` ioctl, in the calling thread's netns.
fn set_loopback_up() -> io::Result<()> {
    // SAFETY: plain socket creation.
    let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if sock < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: ifreq is plain old data.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: valid socket and ifreq; SIOCGIFFLAGS fills the flags.
    let result = if unsafe { libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut req) } < 0 {
        Err(io::Error::last_os_error())
    } else {
        // SAFETY: reading and writing the flags member of the union set just above.
        unsafe { req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short };
        // SAFETY: valid socket and ifreq.
        if unsafe { libc::ioctl(sock, libc::SIOCSIFFLAGS, &req) } < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
    };
    // SAFETY: closing the socket opened above.
    unsafe { libc::close(sock) };
    result
}
