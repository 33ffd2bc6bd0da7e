//! Builds the kernel programs (`viking-ebpf`, all its binaries) for `bpfel-unknown-none` and
//! places them in `OUT_DIR`; `src/setups/baseline.rs` embeds `baseline-redirect`, the
//! minimal redirect program the benchmark compares Viking's `connect4` with. Same toolchain
//! requirements as `viking-agent/build.rs` (`cargo xtask setup`; docs/toolchain.md).
fn main() {
    // The message alone: the inner build's output above it says what went wrong.
    if let Err(err) = viking_ebpf_build::build_programs("../../viking-ebpf") {
        eprintln!("error: {err}");
        std::process::exit(1);
    }
}
