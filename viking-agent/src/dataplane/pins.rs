//! The pin directory: `<pin-dir>/maps/<MAP>` and `<pin-dir>/links/<program>` on a bpf
//! filesystem. Pins are what keep the dataplane alive while no agent runs.

use std::{
    io,
    path::{Path, PathBuf},
};

use rustix::mount::MountFlags;

/// Default pin directory.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/viking";
/// Where bpffs is conventionally mounted; the agent mounts it there when missing.
const BPFFS_MOUNT: &str = "/sys/fs/bpf";
/// `BPF_FS_MAGIC` from `statfs(2)`.
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// Paths of the pins of one Viking installation.
#[derive(Clone, Debug)]
pub struct PinDir {
    root: PathBuf,
}

impl PinDir {
    /// The installation pinned under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Pin path of a map.
    pub fn map(&self, name: &str) -> PathBuf {
        self.root.join("maps").join(name)
    }

    /// Pin path of a program's link.
    pub fn link(&self, program: &str) -> PathBuf {
        self.root.join("links").join(program)
    }

    /// Makes sure the directory exists on a bpf filesystem, mounting bpffs at
    /// `/sys/fs/bpf` when the directory is below it and nothing is mounted there.
    pub fn create(&self) -> io::Result<()> {
        let anchor = nearest_existing_ancestor(&self.root);
        if !is_bpffs(&anchor)? {
            if anchor == Path::new(BPFFS_MOUNT) {
                mount_bpffs(Path::new(BPFFS_MOUNT))?;
                tracing::info!("mounted bpffs at {BPFFS_MOUNT}");
            } else {
                return Err(io::Error::other(format!(
                    "pin dir {} is not on a bpf filesystem (mount -t bpf bpf {})",
                    self.root.display(),
                    anchor.display()
                )));
            }
        }
        std::fs::create_dir_all(self.root.join("maps"))?;
        std::fs::create_dir_all(self.root.join("links"))
    }
}

fn nearest_existing_ancestor(path: &Path) -> PathBuf {
    path.ancestors().find(|p| p.exists()).unwrap_or(Path::new("/")).to_path_buf()
}

fn is_bpffs(path: &Path) -> io::Result<bool> {
    Ok(rustix::fs::statfs(path)?.f_type as i64 == BPF_FS_MAGIC)
}

fn mount_bpffs(target: &Path) -> io::Result<()> {
    Ok(rustix::mount::mount("bpf", target, "bpf", MountFlags::empty(), None)?)
}
