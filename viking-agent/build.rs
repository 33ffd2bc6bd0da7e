//! Builds the kernel programs (`viking-ebpf`) for `bpfel-unknown-none` and places the object
//! in `OUT_DIR`, where `src/dataplane/object.rs` embeds it. Needs Debian's Rust toolchain
//! registered as `debian` and `bpf-linker` (`cargo xtask setup`; docs/toolchain.md).
fn main() -> anyhow::Result<()> {
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "viking-ebpf",
            root_dir: "../viking-ebpf",
            ..Default::default()
        }],
        aya_build::Toolchain::Custom("debian"),
    )
}
