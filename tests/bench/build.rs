//! Builds the kernel programs (`viking-ebpf`, all its binaries) for `bpfel-unknown-none` and
//! places them in `OUT_DIR`; `src/setups/baseline.rs` embeds `baseline-redirect`, the
//! minimal redirect program the benchmark compares Viking's `connect4` with. Same toolchain
//! requirements as `viking-agent/build.rs` (`cargo xtask setup`; docs/toolchain.md).
fn main() -> anyhow::Result<()> {
    // aya-build asks for `-Z build-std=core` when it sees RUSTC_BOOTSTRAP=1, and that needs
    // the `rust-src` component this machine cannot have. Debian's toolchain ships a
    // prebuilt `core` instead; the inner build gets RUSTC_BOOTSTRAP from
    // `.cargo/config.toml` in this directory.
    // SAFETY: build scripts are single-threaded; nothing reads the environment concurrently.
    unsafe { std::env::remove_var("RUSTC_BOOTSTRAP") };
    aya_build::build_ebpf(
        [aya_build::Package { name: "viking-ebpf", root_dir: "../../viking-ebpf", ..Default::default() }],
        aya_build::Toolchain::Custom("debian"),
    )
}
