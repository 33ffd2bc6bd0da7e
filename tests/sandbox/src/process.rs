//! Starting a program inside a test's cgroup and network namespace.

use std::{
    ffi::CString,
    io,
    os::{
        fd::{AsFd, AsRawFd, BorrowedFd},
        unix::{ffi::OsStrExt, process::CommandExt},
    },
    path::Path,
    process::Command,
};

use crate::{Cgroup, Netns};

/// Makes `command` start inside `cgroup` and `netns`. The child first joins the cgroup
/// (while `/sys` is still the host's), then the namespace, then execs: its sockets are
/// created in the cgroup, so the attached programs see them.
pub fn place(command: &mut Command, cgroup: &Cgroup, netns: &Netns) -> io::Result<()> {
    place_at(command, cgroup.path(), netns.as_fd())
}

/// [`place`] for a cgroup directory and a netns fd that this process does not own (e.g.
/// `/run/netns/<name>` of a running demo).
pub fn place_at(command: &mut Command, cgroup_dir: &Path, netns: BorrowedFd<'_>) -> io::Result<()> {
    let procs = CString::new(cgroup_dir.join("cgroup.procs").as_os_str().as_bytes())?;
    let netns_fd = netns.try_clone_to_owned()?;
    // SAFETY: the closure only calls async-signal-safe functions (open, write, close,
    // setns) on data prepared before the fork.
    unsafe {
        command.pre_exec(move || {
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            // "0" moves the writing process.
            let written = libc::write(fd, b"0".as_ptr().cast(), 1);
            libc::close(fd);
            if written != 1 {
                return Err(io::Error::last_os_error());
            }
            if libc::setns(netns_fd.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(())
}

/// Makes `command` start inside `netns` only, outside any test cgroup: its sockets are not
/// seen by the programs (used to show that only the cgroup is affected, and for servers).
pub fn place_netns_only(command: &mut Command, netns: &Netns) -> io::Result<()> {
    let netns_fd = netns.as_fd().try_clone_to_owned()?;
    // SAFETY: setns is async-signal-safe; the fd was prepared before the fork.
    unsafe {
        command.pre_exec(move || {
            if libc::setns(netns_fd.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(())
}
