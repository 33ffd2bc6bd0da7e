//! The agent's allocator is jemalloc (set in `main.rs`, so the tests and fuzz targets that
//! link this crate keep theirs). This module gives its unused pages back at the one moment
//! the agent frees a lot at once: after the initial sync.

use std::ptr;

/// `arena.<MALLCTL_ARENAS_ALL>.purge`: every arena's unused dirty pages.
const PURGE_ALL_ARENAS: &std::ffi::CStr = c"arena.4096.purge";

/// Returns the allocator's unused pages to the kernel now, instead of over the next
/// seconds of decay (jemalloc keeps freed pages for 10 s for reuse, and only looks at them
/// again when it allocates). The initial sync decodes every Consul answer and builds every
/// service twice over; at 100,000 services its garbage is about 20 MiB of RSS. Without
/// jemalloc as the allocator (tests) this purges an unused heap: nothing.
pub fn release_unused() {
    // SAFETY: `mallctl` with a NUL-terminated name and no old or new value, as the purge
    // control requires (jemalloc(3), "arena.<i>.purge"); it touches no Rust memory.
    let status = unsafe {
        tikv_jemalloc_sys::mallctl(PURGE_ALL_ARENAS.as_ptr(), ptr::null_mut(), ptr::null_mut(), ptr::null_mut(), 0)
    };
    if status != 0 {
        tracing::debug!("giving unused memory back to the kernel failed: error {status}");
    }
}
