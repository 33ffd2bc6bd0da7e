//! Where the container runtime puts container cgroups, so that a container's policy can be
//! in the kernel before its first instruction:
//!
//! - with the cgroupfs driver a container runs in `<parent>/<id>` (parent `docker` unless
//!   dockerd or the container says otherwise). At the `create` event the agent makes that
//!   directory itself when it is absent (runc creates it with `mkdir -p` semantics and
//!   reuses it), so the cgroup id is known, and the entry written, before `start`.
//! - with the systemd driver, systemd creates `<slice>/docker-<id>.scope` when the container
//!   starts; its tree is systemd's alone, so the agent waits for the `start` event.
//!
//! Either way the runtime's parent cgroup is the backstop's scope ([`RuntimeScope`]): a
//! cgroup below it that has no entry yet gets the operator's default mode in the kernel.

use std::{
    io,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use crate::model::RuntimeScope;

/// dockerd's cgroup driver (`docker info`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Driver {
    /// runc manages cgroup directories itself.
    Cgroupfs,
    /// systemd creates a scope unit per container.
    Systemd,
}

impl Driver {
    /// From `docker info`'s `CgroupDriver`.
    pub fn from_info(name: Option<&str>) -> Self {
        if name == Some("systemd") { Self::Systemd } else { Self::Cgroupfs }
    }
}

/// The cgroup layout of one dockerd.
#[derive(Clone, Debug)]
pub struct CgroupLayout {
    root: PathBuf,
    driver: Driver,
    /// The parent of container cgroups, relative to `root`.
    parent: Option<String>,
}

impl CgroupLayout {
    /// The layout for `driver`; `configured` is `[docker] cgroup_parent`.
    pub fn new(root: PathBuf, driver: Driver, configured: Option<&str>) -> Self {
        let parent = match (configured, driver) {
            (Some(parent), _) => Some(parent.to_owned()),
            (None, Driver::Cgroupfs) => Some("docker".to_owned()),
            // `system.slice` holds every system service, not only containers.
            (None, Driver::Systemd) => None,
        };
        Self { root, driver, parent }
    }

    /// The driver.
    pub fn driver(&self) -> Driver {
        self.driver
    }

    /// The parent cgroup, relative to the cgroup2 root.
    pub fn parent(&self) -> Option<&str> {
        self.parent.as_deref()
    }

    /// The parent's id and level, when it exists (dockerd creates it with the first
    /// container).
    pub fn scope(&self) -> Option<RuntimeScope> {
        let parent = self.parent.as_deref()?;
        let cgroup_id = std::fs::metadata(self.root.join(parent)).ok()?.ino();
        let level = parent.split('/').filter(|part| !part.is_empty()).count() as u32;
        Some(RuntimeScope { cgroup_id, level })
    }

    /// For a created container: the directory it will run in, made now when absent, and its
    /// cgroup id. `None` when that cannot be known before `start` (systemd driver, or a
    /// parent directory that does not exist: the agent never creates parents).
    /// `container_parent` is the container's own `HostConfig.CgroupParent`.
    pub fn prepare(&self, id: &str, container_parent: Option<&str>) -> io::Result<Option<(PathBuf, u64)>> {
        if self.driver != Driver::Cgroupfs {
            return Ok(None);
        }
        let parent = match container_parent.map(|p| p.trim_matches('/')).filter(|p| !p.is_empty()) {
            Some(parent) => parent,
            None => match &self.parent {
                Some(parent) => parent.as_str(),
                None => return Ok(None),
            },
        };
        let parent_dir = self.root.join(parent);
        if !parent_dir.is_dir() || id.is_empty() || id.contains('/') {
            return Ok(None);
        }
        let dir = parent_dir.join(id);
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
            Err(err) => return Err(err),
        }
        Ok(Some((dir.clone(), std::fs::metadata(&dir)?.ino())))
    }
}

/// The cgroup v2 directory of a process, from the `0::<path>` line of `/proc/<pid>/cgroup`,
/// and its id (the directory's inode).
pub fn cgroup_of(pid: i64, cgroup2_root: &Path) -> io::Result<(PathBuf, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))?;
    let path = text
        .lines()
        .find_map(|line| line.strip_prefix("0::"))
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("pid {pid} has no cgroup v2 path")))?;
    let dir = cgroup2_root.join(path.trim_start_matches('/'));
    let id = std::fs::metadata(&dir)?.ino();
    Ok((dir, id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_a_cgroup_id() {
        let root = viking_common::cgroup2::root().unwrap();
        let (dir, id) = cgroup_of(i64::from(std::process::id()), &root).unwrap();
        assert!(id > 0);
        assert!(dir.starts_with(&root));
    }

    #[test]
    fn a_created_container_gets_its_directory_below_an_existing_parent_only() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("ci/docker")).unwrap();
        let layout = CgroupLayout::new(root.path().into(), Driver::Cgroupfs, Some("ci/docker"));
        let (dir, id) = layout.prepare("abc", None).unwrap().unwrap();
        assert_eq!(dir, root.path().join("ci/docker/abc"));
        assert_eq!(layout.prepare("abc", None).unwrap().unwrap().1, id, "an existing directory is reused");
        assert_eq!(layout.prepare("abc", Some("/elsewhere")).unwrap(), None, "no parent is created");
        assert_eq!(layout.prepare("../x", None).unwrap(), None);
        let scope = layout.scope().unwrap();
        assert_eq!(scope.level, 2);
        let systemd = CgroupLayout::new(root.path().into(), Driver::Systemd, None);
        assert_eq!((systemd.parent(), systemd.prepare("abc", None).unwrap()), (None, None));
    }
}
