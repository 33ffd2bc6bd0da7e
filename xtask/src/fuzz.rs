//! `cargo xtask fuzz`: Viking's parsers fuzzed with cargo-fuzz (libFuzzer), and the short
//! run of every target that `cargo xtask test` makes.
//!
//! The fuzz crate is `fuzz/`, outside the workspace (cargo-fuzz builds it with its own
//! flags into `fuzz/target`). Each target starts from its committed corpus,
//! `fuzz/corpus/<target>/` (real inputs, and what longer runs found); what a run finds goes
//! to a working corpus under `fuzz/target/`, so a run never changes the checkout. A crash
//! leaves its input in `fuzz/artifacts/<target>/`. See docs/toolchain.md.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{Context as _, bail, ensure};

use crate::{setup, workspace_root};

/// The fuzz targets, `fuzz/fuzz_targets/<name>.rs`.
pub const TARGETS: [&str; 4] = ["config", "consul", "docker", "dns"];

/// Seconds `cargo xtask test` runs each target: long enough to replay the corpus and try
/// some 100 000 new inputs per target, short enough to keep the suite quick.
pub const TEST_SECONDS: u64 = 15;

/// An input that takes longer than this is reported as a hang (a failure).
const INPUT_TIMEOUT_SECONDS: u64 = 10;

/// cargo-fuzz's build flags, the same for `build` and `run` (others would rebuild):
/// release code with debug assertions and overflow checks, AddressSanitizer (the default).
const BUILD_FLAGS: [&str; 3] = ["--debug-assertions", "--fuzz-dir", "fuzz"];

/// Where a run's new inputs go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkCorpus {
    /// `fuzz/target/corpus/<target>/`, kept from run to run (`cargo xtask fuzz`).
    Kept,
    /// An empty directory each time, so the run depends on the committed corpus only
    /// (`cargo xtask test`).
    Fresh,
}

/// Builds the fuzz targets and runs each of `targets` (all when empty) for `seconds`;
/// fails when one crashes, naming the input. With `merge`, the inputs of the working
/// corpus that reach code the committed corpus does not are then added to it.
pub fn run(targets: &[String], seconds: u64, work: WorkCorpus, merge: bool) -> anyhow::Result<()> {
    let targets = chosen(targets)?;
    setup::cargo_fuzz()?;
    eprintln!("xtask: building the fuzz targets (cargo fuzz build)");
    let mut build = cargo_fuzz("build");
    status(&mut build, "cargo fuzz build")?;
    let mut failed = Vec::new();
    for target in &targets {
        if let Err(err) = run_target(target, seconds, work) {
            eprintln!("xtask: {err:#}");
            failed.push(*target);
        }
    }
    ensure!(failed.is_empty(), "fuzz target(s) {} failed; see above", failed.join(", "));
    if merge {
        for target in &targets {
            merge_into_corpus(target)?;
        }
    }
    Ok(())
}

/// The targets named (checked), or all of them.
fn chosen(names: &[String]) -> anyhow::Result<Vec<&'static str>> {
    if names.is_empty() {
        return Ok(TARGETS.to_vec());
    }
    names
        .iter()
        .map(|name| {
            TARGETS
                .iter()
                .copied()
                .find(|target| target == name)
                .with_context(|| format!("no fuzz target {name:?}; the targets are {}", TARGETS.join(", ")))
        })
        .collect()
}

/// `cargo fuzz <subcommand>` with the build flags. cargo-fuzz passes unstable flags
/// (`-Zsanitizer=address`) to rustc; `RUSTC_BOOTSTRAP=1` lets this stable toolchain take
/// them, as the rustup nightly would (no `rust-src` is needed). `viking-agent/build.rs`
/// removes it again before building the eBPF object (docs/toolchain.md).
///
/// The variables `cargo run` set for xtask itself are removed: build scripts that watch
/// them (ring's watches `CARGO_PKG_NAME`) would otherwise run again, and everything above
/// them rebuild, whenever cargo-fuzz is run by hand in between (about 6 minutes).
fn cargo_fuzz(subcommand: &str) -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.current_dir(workspace_root()).args(["fuzz", subcommand]).args(BUILD_FLAGS).env("RUSTC_BOOTSTRAP", "1");
    let own = |name: &str| {
        name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_MANIFEST_")
            || matches!(name, "CARGO_CRATE_NAME" | "CARGO_BIN_NAME" | "CARGO_PRIMARY_PACKAGE")
    };
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(own) {
            command.env_remove(name);
        }
    }
    command
}

fn status(command: &mut Command, what: &str) -> anyhow::Result<()> {
    let status = command.status().with_context(|| format!("starting {what}"))?;
    ensure!(status.success(), "{what} failed ({status})");
    Ok(())
}

fn fuzz_dir() -> PathBuf {
    workspace_root().join("fuzz")
}

/// Runs one target for `seconds`, its output in `fuzz/target/logs/<target>.log`; prints
/// its statistics, or the end of the log and the input that made it fail.
fn run_target(target: &str, seconds: u64, work: WorkCorpus) -> anyhow::Result<()> {
    let fuzz = fuzz_dir();
    let corpus = fuzz.join("corpus").join(target);
    let work_dir = match work {
        WorkCorpus::Kept => fuzz.join("target").join("corpus").join(target),
        WorkCorpus::Fresh => {
            let dir = fuzz.join("target").join("test-corpus").join(target);
            if dir.exists() {
                fs::remove_dir_all(&dir).with_context(|| format!("emptying {}", dir.display()))?;
            }
            dir
        }
    };
    fs::create_dir_all(&work_dir).with_context(|| format!("creating {}", work_dir.display()))?;
    let logs = fuzz.join("target").join("logs");
    fs::create_dir_all(&logs)?;
    let log_path = logs.join(format!("{target}.log"));
    let log = fs::File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    let artifacts = fuzz.join("artifacts").join(target);
    let before = files(&artifacts);
    eprintln!("xtask: fuzzing {target} for {seconds} s (log: {})", log_path.display());
    let started = Instant::now();
    // libFuzzer adds new inputs to the first corpus directory and reads the others.
    let status = cargo_fuzz("run")
        .arg(target)
        .arg(&work_dir)
        .arg(&corpus)
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .arg(format!("-timeout={INPUT_TIMEOUT_SECONDS}"))
        .arg("-print_final_stats=1")
        .stdout(log.try_clone()?)
        .stderr(log)
        .status()
        .context("starting cargo fuzz run")?;
    let output = fs::read_to_string(&log_path).unwrap_or_default();
    if status.success() {
        eprintln!("xtask: fuzz {target}: {} in {:.0?}", statistics(&output), started.elapsed());
        return Ok(());
    }
    let tail: Vec<&str> = output.lines().rev().take(40).collect();
    for line in tail.iter().rev() {
        eprintln!("  {line}");
    }
    let found: Vec<PathBuf> = files(&artifacts).into_iter().filter(|file| !before.contains(file)).collect();
    match found.as_slice() {
        [] => bail!("fuzz target {target} failed ({status}); log: {}", log_path.display()),
        inputs => {
            let root = workspace_root();
            let shown: Vec<String> =
                inputs.iter().map(|input| input.strip_prefix(&root).unwrap_or(input).display().to_string()).collect();
            bail!(
                "fuzz target {target} failed on {}; replay with `RUSTC_BOOTSTRAP=1 cargo fuzz run {} {target} {}`, \
                 fix the parser and add the input as a regression test next to it",
                shown.join(", "),
                BUILD_FLAGS.join(" "),
                shown[0]
            )
        }
    }
}

/// The files in `dir` (none when it does not exist).
fn files(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir).into_iter().flatten().flatten().map(|entry| entry.path()).collect()
}

/// "N runs, E exec/s, coverage C" from libFuzzer's final statistics and last status line.
fn statistics(output: &str) -> String {
    let stat = |name: &str| {
        output.lines().find_map(|line| line.strip_prefix(name)?.trim().strip_prefix(':')).map(str::trim).unwrap_or("?")
    };
    let last = output.lines().rev().find(|line| line.contains(" cov: "));
    let field = |name: &str| {
        last.and_then(|line| line.split_whitespace().skip_while(|w| *w != name).nth(1)).unwrap_or("?").to_owned()
    };
    format!(
        "{} runs, {} exec/s, coverage {} edges, corpus {}",
        stat("stat::number_of_executed_units"),
        stat("stat::average_exec_per_sec"),
        field("cov:"),
        field("corp:")
    )
}

/// Adds the inputs of the working corpus that reach new code to `fuzz/corpus/<target>/`:
/// the committed inputs stay, and a small set of the others that covers what they add is
/// copied (libFuzzer's `-set_cover_merge=1`). Coverage counts edges, not hit counts
/// (`-use_counters=0`). Measured on the corpus of 5 minutes of `config`, for the same 8114
/// edges: `-merge=1` kept 1858 inputs, 735 on edges only; this keeps 457.
fn merge_into_corpus(target: &str) -> anyhow::Result<()> {
    let fuzz = fuzz_dir();
    let corpus = fuzz.join("corpus").join(target);
    let work_dir = fuzz.join("target").join("corpus").join(target);
    let before = files(&corpus).len();
    eprintln!("xtask: merging {} into {}", work_dir.display(), corpus.display());
    let mut merge = cargo_fuzz("run");
    merge.arg(target).arg(&corpus).arg(&work_dir).args(["--", "-set_cover_merge=1", "-use_counters=0"]);
    status(&mut merge, "cargo fuzz run -- -set_cover_merge=1")?;
    let after = files(&corpus).len();
    eprintln!("xtask: fuzz/corpus/{target}: {} new input(s), {after} in all", after - before);
    Ok(())
}
