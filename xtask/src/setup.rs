//! Installing what Viking needs on a fresh Debian machine, idempotently.
//!
//! The rustup toolchains have no `rust-src` (it cannot be downloaded here), so the eBPF
//! crate is built with Debian's Rust, which ships a prebuilt `core` for
//! `bpfel-unknown-none`, registered with rustup as `debian`; `bpf-linker` is built against
//! Debian's LLVM 22. See docs/toolchain.md.

use std::process::Command;

use anyhow::{Context as _, bail, ensure};

/// Debian packages, and why each is needed.
const APT_PACKAGES: &[(&str, &str)] = &[
    ("rustc-web", "Debian's Rust 1.96 with LLVM 22: builds the eBPF crate"),
    ("cargo-web", "Debian's cargo for that toolchain"),
    ("libstd-rust-web-dev-bpf", "prebuilt `core` for bpfel-unknown-none"),
    ("llvm-22-dev", "bpf-linker links against LLVM 22"),
    ("libpolly-22-dev", "needed by llvm-22-dev's cmake config for bpf-linker"),
    ("libzstd-dev", "bpf-linker's LLVM link dependency"),
    ("zlib1g-dev", "bpf-linker's LLVM link dependency"),
    ("make", "builds jemalloc, the agent's allocator (tikv-jemalloc-sys)"),
    ("curl", "`cargo xtask exec -- curl …` against the demo"),
    ("iproute2", "`ip addr` inside test network namespaces"),
    ("python3", "tests with a dual-stack (AF_INET6) client"),
    ("docker.io", "a real dockerd for the container tests"),
    ("busybox-static", "the test containers' image (made locally, no registry)"),
];

const BPF_LINKER_VERSION: &str = "0.13.0";
/// cargo-fuzz builds and runs the fuzz targets (`cargo xtask fuzz`, and `test`).
const CARGO_FUZZ_VERSION: &str = "0.13.2";
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";
/// Name under which Debian's toolchain is registered with rustup (used by viking-ebpf-build).
const DEBIAN_TOOLCHAIN: &str = "debian";

/// Makes sure every prerequisite is present; installs what is missing.
pub fn run() -> anyhow::Result<()> {
    apt_packages(APT_PACKAGES)?;
    debian_toolchain()?;
    bpf_linker()?;
    Ok(())
}

/// Fails with a clear message unless running as root.
pub fn require_root(why: &str) -> anyhow::Result<()> {
    if !rustix::process::geteuid().is_root() {
        bail!("this needs root: {why}");
    }
    Ok(())
}

/// Installs those of `packages` (name, why it is needed) that are missing.
pub fn apt_packages(packages: &[(&str, &str)]) -> anyhow::Result<()> {
    let missing: Vec<&str> = packages.iter().map(|(name, _)| *name).filter(|name| !dpkg_installed(name)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    require_root(&format!("installing Debian packages {}", missing.join(" ")))?;
    eprintln!("xtask setup: installing {}", missing.join(" "));
    for (name, why) in packages.iter().filter(|(name, _)| missing.contains(name)) {
        eprintln!("  {name}: {why}");
    }
    run_step(Command::new("apt-get").args(["update", "-q"]), "apt-get update")?;
    run_step(
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
        "apt-get install",
    )
}

fn dpkg_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .is_ok_and(|out| out.status.success() && String::from_utf8_lossy(&out.stdout).contains("install ok installed"))
}

fn debian_toolchain() -> anyhow::Result<()> {
    let list = Command::new("rustup").args(["toolchain", "list"]).output().context("running rustup")?;
    let listed =
        String::from_utf8_lossy(&list.stdout).lines().any(|l| l.split_whitespace().next() == Some(DEBIAN_TOOLCHAIN));
    if listed {
        return Ok(());
    }
    eprintln!("xtask setup: registering Debian's Rust (/usr) with rustup as `{DEBIAN_TOOLCHAIN}`");
    run_step(Command::new("rustup").args(["toolchain", "link", DEBIAN_TOOLCHAIN, "/usr"]), "rustup toolchain link")
}

fn bpf_linker() -> anyhow::Result<()> {
    let installed = Command::new("bpf-linker")
        .arg("--version")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains(BPF_LINKER_VERSION));
    if installed {
        return Ok(());
    }
    eprintln!("xtask setup: building bpf-linker {BPF_LINKER_VERSION} against LLVM 22 (about 75 s)");
    let path = format!("{LLVM_PREFIX}/bin:{}", std::env::var("PATH").unwrap_or_default());
    run_step(
        Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .args([
                "install",
                &format!("bpf-linker@{BPF_LINKER_VERSION}"),
                "--no-default-features",
                "--features",
                "llvm-22",
            ])
            .env("LLVM_PREFIX", LLVM_PREFIX)
            .env("PATH", path),
        "cargo install bpf-linker",
    )
}

/// Installs `cargo-fuzz` unless present (about 50 s on 2 cores). The fuzz targets need no
/// nightly toolchain: `cargo xtask fuzz` enables the unstable flags with `RUSTC_BOOTSTRAP`.
pub fn cargo_fuzz() -> anyhow::Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let installed = Command::new(&cargo)
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == format!("cargo-fuzz {CARGO_FUZZ_VERSION}"));
    if installed {
        return Ok(());
    }
    eprintln!("xtask setup: installing cargo-fuzz {CARGO_FUZZ_VERSION} (about 50 s)");
    run_step(
        Command::new(cargo).args(["install", "--locked", &format!("cargo-fuzz@{CARGO_FUZZ_VERSION}")]),
        "cargo install cargo-fuzz",
    )
}

fn run_step(command: &mut Command, what: &str) -> anyhow::Result<()> {
    let status = command.status().with_context(|| format!("xtask setup: cannot start {what}"))?;
    ensure!(status.success(), "xtask setup: {what} failed ({status}); see the output above");
    Ok(())
}
