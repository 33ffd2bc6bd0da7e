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
