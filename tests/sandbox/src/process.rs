//! Starting a program inside a test's cgroup and network namespace.

use std::{
    ffi::CString,
    io,
    os::{
        fd::{AsFd, BorrowedFd},
        unix::{ffi::OsStrExt, process::CommandExt},
    },
    path::Path,
    process::Command,
};

use rustix::{
    fs::{Mode, OFlags},
    thread::LinkNameSpaceType,
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
    // SAFETY: the closure only makes system calls that are async-signal-safe (open, write,
    // close, setns; rustix issues them directly and allocates nothing for a `CStr` path or
    // an errno), and allocates nothing itself, on data prepared before the fork.
    unsafe {
        command.pre_exec(move || {
            let procs = rustix::fs::open(procs.as_c_str(), OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty())?;
            // "0" moves the writing process.
            if rustix::io::write(&procs, b"0")? != 1 {
                // An `ErrorKind` needs no allocation, unlike a message.
                return Err(io::ErrorKind::WriteZero.into());
            }
            drop(procs);
            rustix::thread::move_into_link_name_space(netns_fd.as_fd(), Some(LinkNameSpaceType::Network))?;
            Ok(())
        });
    }
    Ok(())
}

/// Makes `command` start inside `netns` only, outside any test cgroup: its sockets are not
/// seen by the programs (used to show that only the cgroup is affected, and for servers).
pub fn place_netns_only(command: &mut Command, netns: &Netns) -> io::Result<()> {
    let netns_fd = netns.as_fd().try_clone_to_owned()?;
    // SAFETY: setns is async-signal-safe (rustix issues it directly); the fd was prepared
    // before the fork.
    unsafe {
        command.pre_exec(move || {
            rustix::thread::move_into_link_name_space(netns_fd.as_fd(), Some(LinkNameSpaceType::Network))?;
            Ok(())
        });
    }
    Ok(())
}

/// Waits at most `timeout` for `child`, then kills it (SIGKILL) and reaps it. Returns the
/// exit status, or `None` when it had to be killed.
pub fn wait_bounded(child: &mut std::process::Child, timeout: std::time::Duration) -> Option<std::process::ExitStatus> {
    if let Some(status) = crate::wait_for(timeout, || child.try_wait().ok().flatten()) {
        return Some(status);
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// Like `Child::wait_with_output`, bounded by `timeout` (the child is killed after it).
pub fn output_bounded(mut child: std::process::Child, timeout: std::time::Duration) -> std::process::Output {
    use std::io::Read as _;
    let stdout = child.stdout.take();
    let reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut stdout) = stdout {
            let _ = stdout.read_to_end(&mut bytes);
        }
        bytes
    });
    let status = wait_bounded(&mut child, timeout);
    let stdout = reader.join().unwrap_or_default();
    // A killed child reports "signal 9".
    let status = status.unwrap_or_else(|| child.wait().unwrap_or_default());
    std::process::Output { status, stdout, stderr: Vec::new() }
}
