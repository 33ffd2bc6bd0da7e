//! Running cargo for the workspace.

use std::{ffi::OsString, path::PathBuf, process::Command};

use anyhow::{Context as _, ensure};

use crate::workspace_root;

/// Which cargo profile to build the agent with.
#[derive(Clone, Copy, Debug)]
pub enum Profile {
    /// `target/debug`, what `cargo test` uses.
    Dev,
    /// `target/release`, what users run.
    Release,
}

/// The cargo that runs this xtask (rustup's), so builds use the same toolchain.
fn cargo() -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.current_dir(workspace_root());
    command
}

fn status(mut command: Command, what: &str) -> anyhow::Result<()> {
    let status = command.status().with_context(|| format!("starting {what}"))?;
    ensure!(status.success(), "{what} failed ({status})");
    Ok(())
}

/// Builds `viking-agent` (its build script builds and embeds the eBPF object) and returns
/// the binary's path.
pub fn build_agent(profile: Profile) -> anyhow::Result<PathBuf> {
    let mut command = cargo();
    command.args(["build", "--package", "viking-agent", "--bin", "viking-agent"]);
    let dir = match profile {
        Profile::Dev => "debug",
        Profile::Release => {
            command.arg("--release");
            "release"
        }
    };
    eprintln!("xtask: building viking-agent ({dir})");
    status(command, "cargo build")?;
    Ok(workspace_root().join("target").join(dir).join("viking-agent"))
}

/// Builds the benchmark driver `viking-bench` in release mode (its build script builds and
/// embeds the baseline redirect program) and returns the binary's path.
pub fn build_bench() -> anyhow::Result<PathBuf> {
    let mut command = cargo();
    command.args(["build", "--release", "--package", "viking-bench", "--bin", "viking-bench"]);
    eprintln!("xtask: building viking-bench (release)");
    status(command, "cargo build")?;
    Ok(workspace_root().join("target").join("release").join("viking-bench"))
}

/// The lint gates of `cargo xtask test`: unformatted code (the fuzz crate's too) and any
/// clippy warning fail it.
pub fn lint() -> anyhow::Result<()> {
    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--check"]);
    eprintln!("xtask: cargo fmt --all --check");
    status(fmt, "cargo fmt --check (run `cargo fmt --all`)")?;
    // The fuzz crate is outside the workspace.
    let mut fmt = cargo();
    fmt.args(["fmt", "--manifest-path", "fuzz/Cargo.toml", "--check"]);
    eprintln!("xtask: cargo fmt --manifest-path fuzz/Cargo.toml --check");
    status(fmt, "cargo fmt --check of fuzz/ (run `cargo fmt --manifest-path fuzz/Cargo.toml`)")?;
    let mut clippy = cargo();
    clippy.args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]);
    eprintln!("xtask: cargo clippy --workspace --all-targets -- -D warnings");
    status(clippy, "cargo clippy")
}

/// `cargo test --workspace` with extra arguments.
pub fn test(args: &[OsString]) -> anyhow::Result<()> {
    let mut command = cargo();
    command.args(["test", "--workspace"]).args(args);
    eprintln!("xtask: cargo test --workspace");
    status(command, "cargo test")
}
