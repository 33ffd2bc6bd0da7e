//! A cgroup v2 directory owned by one test.

use std::{
    io,
    path::{Path, PathBuf},
    time::Duration,
};

use crate::{unique_name, wait_for};

/// A child of the cgroup v2 root; removed (with its processes killed) on drop.
#[derive(Debug)]
pub struct TestCgroup {
    path: PathBuf,
}

impl TestCgroup {
    /// Creates `viking-test-cg-<pid>-<n>` under the cgroup v2 mount.
    pub fn new() -> io::Result<Self> {
        let root = viking_agent::cgroup::cgroup2_root()?;
        let path = root.join(unique_name("cg"));
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

impl Drop for TestCgroup {
    fn drop(&mut self) {
        // cgroup.kill (5.14+) kills every process in the cgroup at once.
        let _ = std::fs::write(self.path.join("cgroup.kill"), "1");
        let _ = wait_for(Duration::from_secs(5), || self.pids().is_empty().then_some(()));
        if let Err(err) = std::fs::remove_dir(&self.path) {
            eprintln!("warning: could not remove test cgroup {}: {err}", self.path.display());
        }
    }
}
