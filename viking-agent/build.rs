//! Builds the kernel programs (`viking-ebpf`) for `bpfel-unknown-none` and places the object
//! in `OUT_DIR`, where `src/dataplane/object.rs` embeds it. Needs Debian's Rust toolchain
//! registered as `debian` and `bpf-linker` (`cargo xtask setup`; docs/toolchain.md).
fn main() {
    // The message alone: the inner build's output above it says what went wrong.
    if let Err(err) = viking_ebpf_build::build_programs("../viking-ebpf") {
        eprintln!("error: {err}");
        std::process::exit(1);
    }
}
