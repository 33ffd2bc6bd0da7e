//! The kernel side, seen from the agent: load the programs, adopt or create the pinned
//! maps, attach to a cgroup (or swap the program inside an existing pinned link), and
//! remove it all again.

mod bpf_sys;
mod layout;
pub mod object;
pub mod pins;
pub mod sock_destroy;
pub mod tables;

use std::{
    fs::File,
    os::{
        fd::{AsFd, BorrowedFd, OwnedFd},
        unix::fs::MetadataExt,
    },
    path::{Path, PathBuf},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, Map, MapData, MapInfo},
    programs::{CgroupAttachMode, CgroupSock, CgroupSockAddr, Program, SockOps, links::FdLink},
};
pub use layout::{HOOKS, PINNED_MAPS};
use pins::PinDir;
use tables::{KernelTables, MapSource};
use viking_common::{LAYOUT_READABLE_BY, LAYOUT_VERSION, layout::Sizing, names};

use crate::model::Limits;

/// Why the dataplane could not be installed or removed.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    /// Pin directory problems (bpffs missing, permissions).
    #[error("pin directory {path}: {source}")]
    PinDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A pinned map has a layout this agent does not understand.
    #[error(
        "pinned map {path} has {what} {found}, this agent needs {expected}; \
         it was created by another Viking version: run `viking-agent uninstall` first"
    )]
    IncompatiblePin {
        /// The pin.
        path: PathBuf,
        /// Which property differs.
        what: &'static str,
        /// Its value in the kernel.
        found: u32,
        /// The value this agent needs.
        expected: u32,
    },
    /// The pins were made by a newer Viking, whose layout this agent cannot use.
    #[error(
        "the pins under {path} have layout {found}, which needs an agent of layout {readable_by} \
         or newer; this agent's layout is {supported}: they were created by a newer Viking \
         version. Run that version, or `viking-agent uninstall` first (VIP connects fail until \
         an agent installs again); nothing was changed"
    )]
    NewerLayout {
        /// The pin directory.
        path: PathBuf,
        /// The layout version found.
        found: u32,
        /// The oldest layout that can use the pins.
        readable_by: u32,
        /// [`LAYOUT_VERSION`].
        supported: u32,
    },
    /// The object could not be loaded (the verifier log is in the message).
    #[error("loading the eBPF object: {0}")]
    Load(#[from] aya::EbpfError),
    /// A program could not be loaded or attached.
    #[error("program {program}: {source}")]
    Program {
        /// The program.
        program: &'static str,
        /// The aya error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The cgroup could not be opened.
    #[error("cgroup {path}: {source}")]
    Cgroup {
        /// The cgroup directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A map could not be opened.
    #[error(transparent)]
    Table(#[from] tables::TableError),
}

/// A loaded and attached dataplane.
#[derive(Debug)]
pub struct Dataplane {
    /// The maps, for the reconciler.
    pub tables: KernelTables,
    /// Kept so that the log ring buffer stays readable.
    pub ebpf: Ebpf,
    /// Whether the maps were adopted from pins (an earlier agent's state).
    pub adopted: bool,
    /// The layout of the adopted pins when it was older than this agent's (now upgraded).
    pub upgraded_from: Option<u32>,
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
        Ok(Self { tables, ebpf, adopted, upgraded_from, limits })
    }
}

/// The layout record of an installation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PinnedLayout {
    /// Its layout version.
    pub version: u32,
    /// The oldest layout whose agents can use it.
    pub readable_by: u32,
}

/// The layout of the pins under `pins`: `None` when nothing is pinned there, layout 1 for
/// pins made before the layout was recorded (or whose record was never written).
pub fn pinned_layout(pins: &PinDir) -> Result<Option<PinnedLayout>, DataplaneError> {
    let path = pins.map(names::LAYOUT);
    if !path.exists() {
        let legacy = PINNED_MAPS.iter().any(|spec| pins.map(spec.name).exists());
        return Ok(legacy.then_some(PinnedLayout { version: 1, readable_by: 1 }));
    }
    let unreadable = |err: &dyn std::fmt::Display| DataplaneError::PinDir {
        path: path.clone(),
        source: std::io::Error::other(err.to_string()),
    };
    let data = MapData::from_pin(&path).map_err(|err| unreadable(&err))?;
    let layout: Array<MapData, u32> = Map::Array(data).try_into().map_err(|err| unreadable(&err))?;
    let version = layout.get(&0, 0).map_err(|err| unreadable(&err))?.max(1);
    // A record with one entry (a layout map made before readable-by existed) says only its
    // version: readable by that version alone.
    let readable_by = match layout.len() {
        0 | 1 => version,
        _ => layout.get(&1, 0).map_err(|err| unreadable(&err))?.clamp(1, version),
    };
    Ok(Some(PinnedLayout { version, readable_by }))
}

/// Records this agent's layout in the (adopted or new) `LAYOUT` map.
fn record_layout(ebpf: &mut Ebpf) -> Result<(), DataplaneError> {
    let map = ebpf
        .map_mut(names::LAYOUT)
        .ok_or_else(|| tables::TableError::Missing { name: names::LAYOUT, detail: "not in the eBPF object".into() })?;
    let mut layout: Array<&mut MapData, u32> = map.try_into().map_err(tables::map_err(names::LAYOUT))?;
    layout.set(1, LAYOUT_READABLE_BY, 0).map_err(tables::map_err(names::LAYOUT))?;
    layout.set(0, LAYOUT_VERSION, 0).map_err(tables::map_err(names::LAYOUT))?;
    Ok(())
}

/// `CLOCK_MONOTONIC` in nanoseconds: the clock of `bpf_ktime_get_ns`, which the kernel's
/// ejection times use.
pub fn monotonic_ns() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    u64::try_from(now.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(now.tv_nsec).unwrap_or(0)
}

/// The configured limits with every map-sized one replaced by the loaded map's size (the
/// first pinned map each limit sizes, from the layout table).
fn effective_limits(ebpf: &Ebpf, configured: &Limits) -> Limits {
    let size = |sizing: Sizing, fallback: u32| {
        let Some(spec) = viking_common::layout::sized_by(sizing) else {
            return fallback;
        };
        let data = match ebpf.map(spec.name) {
            Some(Map::Array(data) | Map::HashMap(data) | Map::LruHashMap(data) | Map::PerCpuArray(data)) => data,
            _ => return fallback,
        };
        data.info().map_or(fallback, |info| info.max_entries())
    };
    Limits {
        max_services: size(Sizing::Services, configured.max_services),
        max_backends: size(Sizing::Backends, configured.max_backends),
        max_backends_per_service: configured.max_backends_per_service,
        max_service_slots: size(Sizing::ServiceSlots, configured.max_service_slots),
        max_rev_nat: size(Sizing::RevNat, configured.max_rev_nat),
        max_affinity: size(Sizing::Affinity, configured.max_affinity),
        max_recent_sockets: size(Sizing::RecentSockets, configured.max_recent_sockets),
    }
}

/// What attaching one program did.
enum Attachment {
    /// A new link was created and pinned.
    New,
    /// The program replaced the one in the pinned link.
    Updated,
}

/// Checks an existing pin against the layout this agent needs. Returns whether it exists.
fn check_pinned_map(
    path: &Path,
    spec: &viking_common::layout::MapSpec,
    limits: &Limits,
) -> Result<bool, DataplaneError> {
    if !path.exists() {
        return Ok(false);
    }
    let info = MapInfo::from_pin(path)
        .map_err(|err| DataplaneError::PinDir { path: path.into(), source: std::io::Error::other(err) })?;
    let mismatch = |what, found, expected| DataplaneError::IncompatiblePin { path: path.into(), what, found, expected };
    if info.key_size() != spec.key_size {
        return Err(mismatch("key size", info.key_size(), spec.key_size));
    }
    if info.value_size() != spec.value_size {
        return Err(mismatch("value size", info.value_size(), spec.value_size));
    }
    let wanted = layout::max_entries(spec, limits).unwrap_or(info.max_entries());
    if info.max_entries() != wanted {
        tracing::warn!(
            map = spec.name,
            pinned = info.max_entries(),
            configured = wanted,
            "pinned map keeps its size; the configured limit applies after `viking-agent uninstall`"
        );
    }
    Ok(true)
}

/// Attaches a loaded program, or swaps it into its pinned link on the same cgroup.
fn attach(
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
fn detach_pinned(path: &Path, link: OwnedFd) -> std::io::Result<()> {
    match bpf_sys::link_detach(link.as_fd()) {
        // Already detached (its cgroup was removed): only the pin is left.
        Err(err) if err.raw_os_error() == Some(libc::ENOLINK) => {}
        other => other?,
    }
    std::fs::remove_file(path)
}

/// A loaded program of either cgroup hook type.
enum LoadedHook<'a> {
    SockAddr(&'a mut CgroupSockAddr),
    Sock(&'a mut CgroupSock),
    SockOps(&'a mut SockOps),
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

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
    fn load(program: &'a mut Program, kind: layout::HookKind) -> Result<Self, BoxError> {
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
