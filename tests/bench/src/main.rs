//! `viking-bench`: measures one workload through four ways of reaching a service — direct
//! connects, a Viking VIP, iptables DNAT rules, an HAProxy hop — in one run on this machine,
//! and reports every result as a ratio to direct. Started by `cargo xtask bench`.
//!
//! The driver (`run`) builds a small world of its own (network namespaces, cgroups, backend
//! servers, the real `viking-agent`, HAProxy, iptables rules inside its own namespace),
//! starts the load generator (`load`, this same binary) inside a cgroup and a namespace for
//! each measurement, and removes everything it created on every exit.

/// The agent's allocator: the simulated cluster runs fifty agents' Consul source, merge and
/// reconciler in this process, and with glibc's malloc they measured slower than the agent
/// runs (a change reached all fifty at p50 21–30 ms instead of 14 ms, and moved with
/// unrelated changes to the agent's allocations). The in-process Consul test server and
/// the load generator use it too.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

mod consul;
mod containers;
mod cpu;
mod interrupt;
mod load;
mod machine;
mod measure;
mod plan;
mod plot;
mod protocol;
mod report;
mod results;
mod scrape;
mod server;
mod setups;
mod stats;
mod targets;
mod world;

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(about = "Viking's benchmark: direct vs Viking vs iptables DNAT vs HAProxy")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// What every measuring subcommand needs.
#[derive(Debug, clap::Args)]
struct Common {
    /// The `viking-agent` binary to benchmark.
    #[arg(long)]
    agent: PathBuf,
    /// Where to write the report (and the plot).
    #[arg(long)]
    out: PathBuf,
    /// Scratch directory for configs and logs.
    #[arg(long)]
    work_dir: PathBuf,
    /// The command line to print in the report as the way to reproduce it.
    #[arg(long, default_value = "cargo xtask bench")]
    command_line: String,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the new-connections, latency and bulk benchmark (as root); writes `benchmarks.md`.
    Run {
        #[command(flatten)]
        common: Common,
        /// Fewer sweep points and shorter runs.
        #[arg(long)]
        quick: bool,
        /// Client threads of the new-connections workload (default: 4 per core).
        #[arg(long)]
        client_threads: Option<u32>,
        /// Worker threads per backend address (default: as many as client threads).
        #[arg(long)]
        server_workers: Option<usize>,
    },
    /// Time Consul changes to the kernel and full syncs (writes `benchmarks-consul.md`).
    Consul {
        #[command(flatten)]
        common: Common,
        /// Measure only these points (`https:10000`, `http:1000`, `cluster`), for working
        /// on one figure; the default is the full set the report is about.
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
    },
    /// Container policy with a real dockerd: first connects in enforce mode and what policy
    /// costs a container's start (writes `benchmarks-containers.md`).
    Containers {
        #[command(flatten)]
        common: Common,
    },
    /// The metrics endpoint with 10,000 services: time per scrape (writes
    /// `benchmarks-metrics.md`).
    Metrics {
        #[command(flatten)]
        common: Common,
    },
    /// (internal) The load generator; runs inside a bench cgroup and netns, prints JSON.
    #[command(hide = true)]
    Load(load::Args),
}

fn main() -> std::process::ExitCode {
    let result = match Cli::parse().command {
        Command::Run { common, quick, client_threads, server_workers } => {
            let mut plan = plan::Plan::new(quick);
            if let Some(threads) = client_threads {
                plan.client_threads = threads.max(1);
                plan.server_workers = threads.max(1) as usize;
            }
            if let Some(workers) = server_workers {
                plan.server_workers = workers.max(1);
            }
            run(&common, plan)
        }
        Command::Consul { common, only } => run_consul(&common, &only),
        Command::Containers { common } => run_containers(&common),
        Command::Metrics { common } => run_metrics(&common),
        Command::Load(args) => load::main(&args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("viking-bench: error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Checks for root and creates the scratch directory.
fn prepare(common: &Common) -> anyhow::Result<()> {
    if !rustix::process::geteuid().is_root() {
        bail!("the benchmark needs root: it loads BPF programs and creates cgroups and network namespaces");
    }
    let work_dir = &common.work_dir;
    std::fs::create_dir_all(work_dir).with_context(|| format!("creating {}", work_dir.display()))
}

fn run(common: &Common, plan: plan::Plan) -> anyhow::Result<()> {
    prepare(common)?;
    // Ctrl-C only raises a flag: the run stops between two measurements (each bounded in
    // time) and every guard then removes what it created.
    interrupt::install()?;
    let interrupted = interrupt::flag();
    let machine = machine::Machine::describe();
    eprintln!("viking-bench: {} ({}), plan: {}", machine.cpu, machine.kernel, plan.summary());
    let results = measure::run_all(&common.agent, &common.work_dir, &plan, interrupted)?;
    let report = report::Report { machine, plan: &plan, command_line: &common.command_line, results: &results };
    println!("{}", report.tables());
    let plot_name = "benchmarks-new-connections.png";
    let out = &common.out;
    plot::new_connections(&results, &out.join(plot_name)).context("drawing the plot")?;
    let markdown = out.join("benchmarks.md");
    std::fs::write(&markdown, report.markdown(plot_name)).with_context(|| format!("writing {}", markdown.display()))?;
    eprintln!("viking-bench: wrote {} and {}", markdown.display(), out.join(plot_name).display());
    Ok(())
}

fn run_consul(common: &Common, only: &[String]) -> anyhow::Result<()> {
    prepare(common)?;
    interrupt::install()?;
    let selection = consul::Selection::parse(only)?;
    let results = consul::run(&common.agent, &common.work_dir, &selection)?;
    let path = common.out.join("benchmarks-consul.md");
    let text = consul::write_report(&results, &machine::Machine::describe(), &common.command_line, &path)?;
    println!("{text}");
    eprintln!("viking-bench: wrote {}", path.display());
    Ok(())
}

fn run_metrics(common: &Common) -> anyhow::Result<()> {
    prepare(common)?;
    interrupt::install()?;
    // The tests' harness finds the agent through this variable.
    // SAFETY: no other thread runs yet, so nothing reads the environment concurrently.
    unsafe { std::env::set_var("VIKING_AGENT_BIN", &common.agent) };
    let path = common.out.join("benchmarks-metrics.md");
    let text = scrape::run(&machine::Machine::describe(), &common.command_line, &path)?;
    println!("{text}");
    eprintln!("viking-bench: wrote {}", path.display());
    Ok(())
}

fn run_containers(common: &Common) -> anyhow::Result<()> {
    prepare(common)?;
    interrupt::install()?;
    // The tests' harness finds the agent through this variable.
    // SAFETY: no other thread runs yet, so nothing reads the environment concurrently.
    unsafe { std::env::set_var("VIKING_AGENT_BIN", &common.agent) };
    let path = common.out.join("benchmarks-containers.md");
    let text = containers::run(&machine::Machine::describe(), &common.command_line, &path)?;
    println!("{text}");
    eprintln!("viking-bench: wrote {}", path.display());
    Ok(())
}
