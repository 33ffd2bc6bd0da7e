//! `uninstall`: every pinned link detached, every pin removed.

use std::path::Path;

use super::{DataplaneError, attach::detach_pinned, bpf_sys, pins::PinDir};

/// What `uninstall` removed.
#[derive(Debug, Default)]
pub struct Removed {
    /// Links detached.
    pub links: Vec<String>,
    /// Map pins removed.
    pub maps: Vec<String>,
}

/// Detaches every pinned link and removes every pin of the installation.
pub fn uninstall(pins: &PinDir) -> Result<Removed, DataplaneError> {
    let mut removed = Removed::default();
    let pin_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DataplaneError::PinDir { path, source }
    };
    for dir in ["links", "maps"] {
        let dir = pins.root().join(dir);
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
            Err(err) => return Err(pin_err(&dir)(err)),
        };
        for entry in entries {
            let path = entry.map_err(pin_err(&dir))?.path();
            let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
            if dir.ends_with("links") {
                let link = bpf_sys::obj_get(&path).map_err(pin_err(&path))?;
                detach_pinned(&path, link).map_err(pin_err(&path))?;
                removed.links.push(name);
            } else {
                std::fs::remove_file(&path).map_err(pin_err(&path))?;
                removed.maps.push(name);
            }
        }
        std::fs::remove_dir(&dir).map_err(pin_err(&dir))?;
    }
    match std::fs::remove_dir(pins.root()) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => return Err(pin_err(pins.root())(err)),
        _ => {}
    }
    Ok(removed)
}
