//! Finding the cgroup v2 hierarchy. Never hard-coded: hybrid hosts mount it at
//! `/sys/fs/cgroup/unified`, pure v2 hosts at `/sys/fs/cgroup`.

use std::{io, path::PathBuf};

/// The mount point of the cgroup v2 hierarchy, from `/proc/self/mountinfo`.
pub fn root() -> io::Result<PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
    cgroup2_root_in(&mountinfo)
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no cgroup2 filesystem in /proc/self/mountinfo"))
}

/// Parses mountinfo text: field 5 is the mount point, the type follows the ` - ` separator.
fn cgroup2_root_in(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (mount, fs) = line.split_once(" - ")?;
        let fs_type = fs.split_whitespace().next()?;
        let mount_point = mount.split_whitespace().nth(4)?;
        (fs_type == "cgroup2").then(|| PathBuf::from(mount_point.replace("\\040", " ")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_unified_mount_of_a_hybrid_host() {
        let text = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
        assert_eq!(cgroup2_root_in(text), Some(PathBuf::from("/sys/fs/cgroup/unified")));
    }

    #[test]
    fn finds_a_pure_v2_mount() {
        let text = "30 23 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(cgroup2_root_in(text), Some(PathBuf::from("/sys/fs/cgroup")));
    }

    #[test]
    fn reports_absence() {
        assert_eq!(cgroup2_root_in("31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n"), None);
    }
}
