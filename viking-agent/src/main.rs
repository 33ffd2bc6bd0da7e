//! The `viking-agent` command line.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use viking_agent::{
    commands::{self, env::EnvFormat, run::RunOptions},
    dataplane::pins::DEFAULT_PIN_DIR,
};

/// jemalloc: smaller and faster than glibc's malloc for the agent's many small, long-lived
/// allocations (figures in docs/design.md "Memory").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Viking: in-kernel service load balancing for container hosts.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Load and attach the programs, then keep the kernel maps in sync with the config.
    Run {
        /// The TOML config file (watched: edits apply within a second).
        #[arg(long)]
        config: PathBuf,
        /// Cgroup (v2 directory) to attach to; default: the cgroup v2 root, i.e. every
        /// process of the host.
        #[arg(long)]
        cgroup: Option<PathBuf>,
        /// Where maps and links are pinned (on bpffs; mounted if missing).
        #[arg(long, default_value = DEFAULT_PIN_DIR)]
        pin_dir: PathBuf,
    },
    /// Inspect the pinned kernel maps (works while the agent is stopped).
    Maps {
        #[command(subcommand)]
        command: MapsCommand,
    },
    /// Detach the programs and remove every pin; VIP connects stop being redirected.
    Uninstall {
        /// The pin directory of the installation.
        #[arg(long, default_value = DEFAULT_PIN_DIR)]
        pin_dir: PathBuf,
    },
    /// Print Docker-link style variables (`NAME_PORT_80_TCP_ADDR=<vip>`, ...) for services,
    /// read from the pinned maps; fails, printing nothing, if a service is unknown.
    Env {
        /// Service names.
        #[arg(required = true)]
        services: Vec<String>,
        /// Prepended to every variable name, e.g. `MYSTACK_`.
        #[arg(long, default_value = "")]
        prefix: String,
        /// `env`: NAME=value lines (docker run --env-file); `shell`: export NAME='value'.
        #[arg(long, value_enum, default_value_t = EnvFormat::Env)]
        format: EnvFormat,
        /// The pin directory of the installation.
        #[arg(long, default_value = DEFAULT_PIN_DIR)]
        pin_dir: PathBuf,
    },
    /// How the agent is doing: version, readiness, pins, programs, map fill, sources. Asks
    /// the running agent's metrics endpoint; without one, reads the pins.
    Status {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// The running agent's `[metrics] listen` address.
        #[arg(long, default_value_t = viking_agent::config::DEFAULT_METRICS_LISTEN)]
        endpoint: std::net::SocketAddr,
        /// The pin directory of the installation.
        #[arg(long, default_value = DEFAULT_PIN_DIR)]
        pin_dir: PathBuf,
        /// Wait up to this many seconds for the running agent to be ready (its `/readyz`
        /// condition); fail if it is not. For systemd's `ExecStartPost=`.
        #[arg(long, value_name = "SECONDS")]
        wait_ready: Option<u64>,
    },
    /// Print the kernel's connect decisions as they happen (redirected to which backend,
    /// refused and why). Reporting is on in the kernel only while this runs.
    Monitor {
        /// Only connects to this service.
        #[arg(long, value_name = "NAME")]
        service: Option<String>,
        /// JSON lines instead of text.
        #[arg(long)]
        json: bool,
        /// Report one connect in N (under load).
        #[arg(long, default_value_t = 1, value_name = "N")]
        sample: u32,
        /// Stop after this many events.
        #[arg(long)]
        count: Option<u64>,
        /// The pin directory of the installation.
        #[arg(long, default_value = DEFAULT_PIN_DIR)]
        pin_dir: PathBuf,
    },
    /// Check a config file: print what it would serve and every error, exit 1 on errors.
    Check {
        /// The TOML config file.
        #[arg(long)]
        config: PathBuf,
        /// Print JSON (services and errors, field by field) instead of lines.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum MapsCommand {
    /// Print every service, its backends and counters.
    Dump {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Only the services (every frontend) of this name.
        #[arg(long, value_name = "NAME")]
        service: Option<String>,
        /// The pin directory of the installation.
        #[arg(long, default_value = DEFAULT_PIN_DIR)]
        pin_dir: PathBuf,
    },
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                // hickory-server logs every query at info.
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,hickory_server=warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let result = match Cli::parse().command {
        Command::Run { config, cgroup, pin_dir } => tokio::runtime::Runtime::new()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(commands::run::run(RunOptions { config, cgroup, pin_dir }))),
        Command::Maps { command: MapsCommand::Dump { json, service, pin_dir } } => {
            commands::maps::dump(&pin_dir, json, service.as_deref())
        }
        Command::Uninstall { pin_dir } => commands::uninstall::uninstall(&pin_dir),
        Command::Env { services, prefix, format, pin_dir } => commands::env::env(&pin_dir, &services, &prefix, format),
        Command::Check { config, json } => commands::check::check(&config, json),
        Command::Monitor { service, json, sample, count, pin_dir } => {
            let options = commands::monitor::MonitorOptions { service, json, sample_every: sample, count };
            commands::monitor::monitor(&pin_dir, &options)
        }
        Command::Status { json, endpoint, pin_dir, wait_ready } => {
            commands::status::status(&pin_dir, endpoint, json, wait_ready.map(std::time::Duration::from_secs))
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
