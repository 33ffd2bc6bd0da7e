//! A cgroup v2 directory owned by one test, demo or benchmark.

use std::{
    io,
    path::{Path, PathBuf},
    time::Duration,
};

pub use viking_common::cgroup2::root;

use crate::{unique_name, wait_for};

/// A child of the cgroup v2 root; on drop its processes are killed and it is removed.
#[derive(Debug)]
pub struct Cgroup {
    path: PathBuf,
}

impl Cgroup {
    /// Creates `viking-test-cg-<pid>-<n>` under the cgroup v2 mount.
    pub fn unique() -> io::Result<Self> {
        Self::named(&unique_name("cg"))
    }

    /// Creates (or takes over, after a crash) the cgroup `name` under the cgroup v2 mount.
    pub fn named(name: &str) -> io::Result<Self> {
        let path = root()?.join(name);
        match std::fs::create_dir(&path) {
            Err(err) if err.kind() != io::ErrorKind::AlreadyExists => return Err(err),
            _ => {}
        }
        Ok(Self { path })
    }

    /// A child cgroup `name` of this one: processes in it are under this cgroup's programs
    /// but have their own cgroup id (a second "container").
    pub fn child(&self, name: &str) -> io::Result<Self> {
        let path = self.path.join(name);
        std::fs::create_dir(&path)?;
        Ok(Self { path })
    }

    /// The cgroup directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// PIDs currently in the cgroup.
    pub fn pids(&self) -> Vec<u32> {
        std::fs::read_to_string(self.path.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|line| line.trim().parse().ok())
            .collect()
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        // cgroup.kill (5.14+) kills every process of the cgroup and its descendants at once.
        let _ = std::fs::write(self.path.join("cgroup.kill"), "1");
        let _ = wait_for(Duration::from_secs(5), || self.pids().is_empty().then_some(()));
        if let Err(err) = remove_tree(&self.path, 0) {
            eprintln!("warning: could not remove cgroup {}: {err}", self.path.display());
        }
    }
}

/// Removes a cgroup and its child cgroups (left by dockerd or a test), deepest first.
fn remove_tree(path: &Path, depth: usize) -> io::Result<()> {
    const MAX_DEPTH: usize = 16;
    if depth < MAX_DEPTH {
        for entry in std::fs::read_dir(path)?.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&entry.path(), depth + 1)?;
            }
        }
    }
    // A just-emptied cgroup can stay busy for a moment.
    let removed = wait_for(Duration::from_secs(2), || std::fs::remove_dir(path).ok());
    removed.map_or_else(|| std::fs::remove_dir(path), Ok)
}
