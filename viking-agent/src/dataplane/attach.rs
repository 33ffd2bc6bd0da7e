//! Attaching the programs to the cgroup through pinned BPF links: a new link, or the
//! program swapped inside the pinned link already on that cgroup; and detaching them.

use std::{
    fs::File,
    os::fd::{AsFd, BorrowedFd, OwnedFd},
    path::Path,
};

use aya::{
    Ebpf,
    programs::{CgroupAttachMode, CgroupSock, CgroupSockAddr, Program, SockOps, links::FdLink},
};

use super::{DataplaneError, bpf_sys, layout, pins::PinDir};

/// What attaching one program did.
pub(super) enum Attachment {
    /// A new link was created and pinned.
    New,
    /// The program replaced the one in the pinned link.
    Updated,
}

/// Attaches a loaded program, or swaps it into its pinned link on the same cgroup.
pub(super) fn attach(
    ebpf: &mut Ebpf,
    hook: &layout::Hook,
    pins: &PinDir,
    cgroup: &File,
    cgroup_id: u64,
) -> Result<Attachment, DataplaneError> {
    let fail = |source: BoxError| DataplaneError::Program { program: hook.program, source };
    let program = ebpf.program_mut(hook.program).ok_or_else(|| fail("not in the eBPF object".into()))?;
    let mut program = LoadedHook::of(program, hook.kind).map_err(fail)?;

    let link_path = pins.link(hook.program);
    let old_link = match bpf_sys::obj_get(&link_path) {
        Ok(fd) => Some(fd),
        Err(_) if !link_path.exists() => None,
        Err(err) => return Err(fail(Box::new(err))),
    };
    if let Some(old) = &old_link {
        let target = bpf_sys::cgroup_link_target(old.as_fd()).map_err(|err| fail(Box::new(err)))?;
        if target == Some(cgroup_id) {
            let prog_fd = program.fd().map_err(fail)?;
            bpf_sys::link_update(old.as_fd(), prog_fd).map_err(|err| fail(Box::new(err)))?;
            tracing::info!(program = hook.program, "replaced the program in the pinned link");
            return Ok(Attachment::Updated);
        }
    }
    // New attachment first, old one removed after: the cgroup is never without a program.
    let link = program.attach(cgroup).map_err(fail)?;
    // bpffs refuses names with a dot.
    let staging = link_path.with_file_name(format!("{}-new", hook.program));
    let _ = std::fs::remove_file(&staging);
    link.pin(&staging).map_err(|err| fail(Box::new(err)))?;
    if let Some(old) = old_link {
        detach_pinned(&link_path, old).map_err(|err| fail(Box::new(err)))?;
        tracing::info!(program = hook.program, "moved to another cgroup");
    }
    std::fs::rename(&staging, &link_path).map_err(|err| fail(Box::new(err)))?;
    tracing::info!(program = hook.program, "attached");
    Ok(Attachment::New)
}

/// Detaches a pinned link now and removes its pin.
pub(super) fn detach_pinned(path: &Path, link: OwnedFd) -> std::io::Result<()> {
    match bpf_sys::link_detach(link.as_fd()) {
        // Already detached (its cgroup was removed): only the pin is left.
        Err(err) if err.raw_os_error() == Some(libc::ENOLINK) => {}
        other => other?,
    }
    std::fs::remove_file(path)
}

/// A loaded program of either cgroup hook type.
pub(super) enum LoadedHook<'a> {
    SockAddr(&'a mut CgroupSockAddr),
    Sock(&'a mut CgroupSock),
    SockOps(&'a mut SockOps),
}

pub(super) type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<'a> LoadedHook<'a> {
    /// `program` as the type `kind` names.
    fn of(program: &'a mut Program, kind: layout::HookKind) -> Result<Self, BoxError> {
        Ok(match kind {
            layout::HookKind::SockAddr => Self::SockAddr(program.try_into()?),
            layout::HookKind::Sock => Self::Sock(program.try_into()?),
            layout::HookKind::SockOps => Self::SockOps(program.try_into()?),
        })
    }

    /// Loads `program` (through the verifier) as the type `kind` names.
    pub(super) fn load(program: &'a mut Program, kind: layout::HookKind) -> Result<Self, BoxError> {
        let mut hook = Self::of(program, kind)?;
        match &mut hook {
            Self::SockAddr(program) => program.load()?,
            Self::Sock(program) => program.load()?,
            Self::SockOps(program) => program.load()?,
        }
        Ok(hook)
    }

    fn fd(&self) -> Result<BorrowedFd<'_>, BoxError> {
        Ok(match self {
            Self::SockAddr(program) => program.fd()?.as_fd(),
            Self::Sock(program) => program.fd()?.as_fd(),
            Self::SockOps(program) => program.fd()?.as_fd(),
        })
    }

    /// Attaches to `cgroup` with a BPF link (always multi-attach for links) and returns it.
    fn attach(&mut self, cgroup: &File) -> Result<FdLink, BoxError> {
        Ok(match self {
            Self::SockAddr(program) => {
                let id = program.attach(cgroup, CgroupAttachMode::Single)?;
                program.take_link(id)?.try_into()?
            }
            Self::Sock(program) => {
                let id = program.attach(cgroup, CgroupAttachMode::Single)?;
                program.take_link(id)?.try_into()?
            }
            Self::SockOps(program) => {
                let id = program.attach(cgroup, CgroupAttachMode::Single)?;
                program.take_link(id)?.try_into()?
            }
        })
    }
}
