//! `viking-agent uninstall`: detach the programs and remove every pin.

use std::path::Path;

use anyhow::Context as _;

use crate::dataplane::{self, pins::PinDir};

/// Removes the installation pinned at `pin_dir`. Afterwards VIP connects are no longer
/// redirected. Safe to run twice.
pub fn uninstall(pin_dir: &Path) -> anyhow::Result<()> {
    let removed =
        dataplane::uninstall(&PinDir::new(pin_dir)).with_context(|| format!("uninstalling {}", pin_dir.display()))?;
    if removed.links.is_empty() && removed.maps.is_empty() {
        println!("nothing installed at {}", pin_dir.display());
    } else {
        println!(
            "detached {} program(s) ({}), removed {} map pin(s) from {}",
            removed.links.len(),
            removed.links.join(", "),
            removed.maps.len(),
            pin_dir.display()
        );
    }
    Ok(())
}
