//! `cargo xtask <command>`: everything a developer runs, from a fresh Debian machine.
//!
//! Every command that builds first runs [`setup`], which installs what is missing (Debian
//! packages, `bpf-linker`, the `debian` rustup toolchain) and is fast when nothing is.

mod bench;
mod cargo;
mod demo;
mod fuzz;
mod setup;

use std::{ffi::OsString, path::PathBuf, time::Duration};

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(about = "Viking's developer commands")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Install what building and testing need (idempotent; needs root when installing).
    Setup,
    /// Build the agent with the eBPF object embedded: target/release/viking-agent.
    Build,
    /// Run the demo: agent + demo services in their own cgroup and netns, until Ctrl-C.
    Run {
        /// Stop by itself after this many seconds (for smoke tests).
        #[arg(long, value_name = "SECONDS")]
        exit_after: Option<u64>,
    },
    /// Check formatting and clippy (warnings are errors), fuzz each parser briefly, then run
    /// the whole test suite, privileged integration tests included (as root).
    Test {
        /// Skip the short fuzz run of each parser (for a quick local run; CI never skips it).
        #[arg(long)]
        no_fuzz: bool,
        /// Extra arguments for `cargo test` (e.g. a test name filter).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// Measure Viking against direct connects, iptables DNAT and HAProxy in one run (as
    /// root) and write docs/benchmarks.md.
    Bench {
        /// Fewer numbers of services and shorter runs: about 3 minutes instead of 13.
        #[arg(long)]
        quick: bool,
    },
    /// Fuzz the parsers (cargo-fuzz): each target for a while from its corpus in
    /// fuzz/corpus/; fails when one crashes, naming the input.
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
        seconds: u64,
        /// Then add the inputs that reached new code to fuzz/corpus/<target>/ (to commit).
        #[arg(long)]
        merge: bool,
        /// Targets to run: config, consul, docker, dns (default: all).
        targets: Vec<String>,
    },
    /// Run a command inside the running demo's cgroup and netns, e.g.
    /// `cargo xtask exec -- curl -s http://240.0.0.10/`.
    Exec {
        /// The command and its arguments.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<OsString>,
    },
    /// (internal) The demo's client: runs inside the demo cgroup and netns.
    #[command(hide = true)]
    DemoClient {
        /// Service address.
        to: String,
        /// Requests to send.
        count: u32,
    },
}

fn main() -> std::process::ExitCode {
    match run(Cli::parse().command) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Setup => {
            setup::run()?;
            setup::cargo_fuzz()
        }
        Command::Build => {
            setup::run()?;
            cargo::build_agent(cargo::Profile::Release).map(drop)
        }
        Command::Run { exit_after } => {
            setup::run()?;
            let agent = cargo::build_agent(cargo::Profile::Release)?;
            demo::run(&agent, exit_after.map(Duration::from_secs))
        }
        Command::Test { no_fuzz, args } => {
            setup::require_root("the integration tests load BPF programs and create cgroups")?;
            setup::run()?;
            cargo::lint()?;
            if !no_fuzz {
                fuzz::run(&[], fuzz::TEST_SECONDS, fuzz::WorkCorpus::Fresh, false)?;
            }
            cargo::build_agent(cargo::Profile::Dev)?;
            cargo::test(&args)
        }
        Command::Bench { quick } => bench::run(quick),
        Command::Fuzz { seconds, merge, targets } => {
            // The targets link the agent, whose build script builds the eBPF object.
            setup::run()?;
            fuzz::run(&targets, seconds, fuzz::WorkCorpus::Kept, merge)
        }
        Command::Exec { command } => demo::exec(&command),
        Command::DemoClient { to, count } => demo::client(&to, count),
    }
}

/// The workspace root (the parent of `xtask/`).
fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask is inside the workspace").to_path_buf()
}
