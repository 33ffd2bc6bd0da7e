//! The kernel side, seen from the agent: load the programs, adopt or create the pinned
//! maps, attach to a cgroup (or swap the program inside an existing pinned link), and
//! remove it all again.
//!
//! This file installs; the parts are `pinned` (what is pinned already: layout record,
//! map checks, sizes), `attach` (links to the cgroup), `uninstall`, and `error`.

mod attach;
mod bpf_sys;
mod error;
mod layout;
pub(crate) mod object;
mod pinned;
pub mod pins;
pub(crate) mod sock_destroy;
pub mod tables;
mod uninstall;

use std::{
    fs::File,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use aya::{Ebpf, EbpfLoader};
pub use error::DataplaneError;
pub use layout::{HOOKS, PINNED_MAPS};
pub use pinned::{PinnedLayout, pinned_layout};
use pins::PinDir;
use tables::{KernelTables, MapSource};
pub use uninstall::{Removed, uninstall};
use viking_common::LAYOUT_VERSION;

use self::{
    attach::{Attachment, BoxError, LoadedHook, attach, detach_pinned},
    pinned::{check_pinned_map, effective_limits, record_layout},
};
use crate::model::Limits;

/// A loaded and attached dataplane.
#[derive(Debug)]
pub struct Dataplane {
    /// The maps, for the reconciler.
    pub tables: KernelTables,
    /// Kept so that the log ring buffer stays readable.
    pub ebpf: Ebpf,
    /// Whether the maps were adopted from pins (an earlier agent's state).
    pub adopted: bool,
    /// The limits the maps really have: the configured ones for new maps, the pinned maps'
    /// own sizes for adopted ones (a map keeps its size until `uninstall`).
    pub limits: Limits,
}

impl Dataplane {
    /// Loads the programs and attaches them to `cgroup`, reusing pinned maps and links under
    /// `pins` when present. A pinned link on the same cgroup gets the new program atomically
    /// (`BPF_LINK_UPDATE`), so connects never see a moment without a program.
    ///
    /// Pins of an older layout are upgraded in place: maps it lacks are created, programs
    /// it lacks are attached, the others swapped as above, and the new layout is recorded
    /// last. Pins of a newer layout are refused before anything is touched.
    pub fn install(pins: &PinDir, cgroup: &Path, limits: &Limits) -> Result<Self, DataplaneError> {
        let found = pinned_layout(pins)?;
        if let Some(found) = found.filter(|f| f.readable_by > LAYOUT_VERSION) {
            return Err(DataplaneError::NewerLayout {
                path: pins.root().into(),
                found: found.version,
                readable_by: found.readable_by,
                supported: LAYOUT_VERSION,
            });
        }
        pins.create().map_err(|source| DataplaneError::PinDir { path: pins.root().into(), source })?;
        let map_paths: Vec<(&'static str, PathBuf, Option<u32>)> = PINNED_MAPS
            .iter()
            .map(|spec| (spec.name, pins.map(spec.name), layout::max_entries(spec, limits)))
            .collect();
        let mut adopted = false;
        for spec in &PINNED_MAPS {
            adopted |= check_pinned_map(&pins.map(spec.name), spec, limits)?;
        }
        let mut loader = EbpfLoader::new();
        for (name, path, max_entries) in &map_paths {
            loader.map_pin_path(name, path.as_path());
            if let Some(max_entries) = max_entries {
                loader.map_max_entries(name, *max_entries);
            }
        }
        let mut ebpf = loader.load(object::BYTES)?;

        let cgroup_dir = File::open(cgroup).map_err(|source| DataplaneError::Cgroup { path: cgroup.into(), source })?;
        let cgroup_id =
            cgroup_dir.metadata().map_err(|source| DataplaneError::Cgroup { path: cgroup.into(), source })?.ino();
        // Every program through the verifier first: a rejected program must not leave an
        // upgrade half-swapped or a fresh install half-attached.
        for hook in &HOOKS {
            let fail = |source: BoxError| DataplaneError::Program { program: hook.program, source };
            let program = ebpf.program_mut(hook.program).ok_or_else(|| fail("not in the eBPF object".into()))?;
            LoadedHook::load(program, hook.kind).map_err(fail)?;
        }
        let mut attached = Vec::new();
        for hook in &HOOKS {
            match attach(&mut ebpf, hook, pins, &cgroup_dir, cgroup_id) {
                Ok(Attachment::New) => attached.push(hook),
                Ok(Attachment::Updated) => {}
                Err(err) => {
                    // Take back the links this run created, so a failed fresh install does
                    // not leave part of the programs attached.
                    for hook in attached {
                        let path = pins.link(hook.program);
                        if let Ok(link) = bpf_sys::obj_get(&path) {
                            let _ = detach_pinned(&path, link);
                        }
                    }
                    return Err(err);
                }
            }
        }
        match found {
            // A newer layout this agent can use: its record (and what only it knows) stays.
            Some(newer) if newer.version > LAYOUT_VERSION => {
                tracing::warn!(pinned = newer.version, agent = LAYOUT_VERSION, "adopted pins of a newer layout");
            }
            _ => record_layout(&mut ebpf)?,
        }
        let upgraded_from = found.map(|f| f.version).filter(|v| *v < LAYOUT_VERSION);
        if let Some(from) = upgraded_from {
            tracing::info!(from, to = LAYOUT_VERSION, "upgraded the pinned layout");
        }
        let limits = effective_limits(&ebpf, limits);
        let tables = KernelTables::open(MapSource::Object(&mut ebpf))?;
        Ok(Self { tables, ebpf, adopted, limits })
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds: the clock of `bpf_ktime_get_ns`, which the kernel's
/// ejection times use.
pub fn monotonic_ns() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    u64::try_from(now.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(now.tv_nsec).unwrap_or(0)
}
