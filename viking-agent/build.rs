//! Builds the kernel programs (`viking-ebpf`) for `bpfel-unknown-none` and places the object
//! in `OUT_DIR`, where `src/dataplane/object.rs` embeds it. Needs Debian's Rust toolchain
//! registered as `debian` and `bpf-linker` (`cargo xtask setup`; docs/toolchain.md).
fn main() -> anyhow::Result<()> {
    // aya-build asks for `-Z build-std=core` when it sees RUSTC_BOOTSTRAP=1, and that needs
    // the `rust-src` component this machine cannot have. Debian's toolchain ships a
    // prebuilt `core` instead; the inner build gets RUSTC_BOOTSTRAP from
    // `.cargo/config.toml` in this directory.
    // SAFETY: build scripts are single-threaded; nothing reads the environment concurrently.
    unsafe { std::env::remove_var("RUSTC_BOOTSTRAP") };
    aya_build::build_ebpf(
        [aya_build::Package { name: "viking-ebpf", root_dir: "../viking-ebpf", ..Default::default() }],
        aya_build::Toolchain::Custom("debian"),
    )
}
