//! `cargo xtask run`: the demo. It builds a small world of its own — a cgroup and a
//! network namespace named `viking-demo`, HTTP backends on the namespace's loopback — starts
//! the agent on an embedded config, shows a client in the cgroup being spread over the
//! backends, and runs until Ctrl-C, then removes everything it created.

mod client;

use std::{
    ffi::OsString,
    fs::File,
    os::fd::AsFd,
    path::{Path, PathBuf},
    process::{Child, Command},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::{Context as _, bail};
pub use client::client;
use rustix::process::{Pid, Signal, kill_process};
use viking_sandbox::{AgentCli, Backend, Cgroup, Netns, process, wait_for};

use crate::workspace_root;

/// Name of the demo's cgroup, netns and pin directory.
const NAME: &str = "viking-demo";
const PIN_DIR: &str = "/sys/fs/bpf/viking-demo";
const CONFIG: &str = include_str!("viking-demo.toml");
/// Backends of the embedded config, with the names they answer with.
const BACKENDS: [(&str, &str); 5] = [
    ("web-1", "127.0.0.1:9001"),
    ("web-2", "127.0.0.1:9002"),
    ("web-3", "127.0.0.1:9003"),
    ("api-1", "127.0.0.1:9101"),
    ("api-2", "127.0.0.1:9102"),
];

/// Runs the demo until Ctrl-C (or `exit_after`).
pub fn run(agent: &Path, exit_after: Option<Duration>) -> anyhow::Result<()> {
    crate::setup::require_root("the demo loads BPF programs and creates a cgroup and a netns")?;
    // Ctrl-C from now on only raises a flag: whatever was created is removed below.
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        ctrlc::set_handler(move || stop.store(true, Ordering::Relaxed)).context("installing the Ctrl-C handler")?;
    }
    let dir = workspace_root().join("target").join(NAME);
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("viking.toml");
    std::fs::write(&config, CONFIG).with_context(|| format!("writing {}", config.display()))?;
    let cli = AgentCli { binary: agent, pin_dir: Path::new(PIN_DIR) };
    // A previous demo killed hard may have left its pins behind.
    let _ = cli.uninstall().output();

    let cgroup = Cgroup::named(NAME).context("creating the demo cgroup")?;
    let netns = Netns::named(NAME).context("creating the demo netns")?;
    let backends = BACKENDS
        .iter()
        .map(|(name, addr)| Backend::http(&netns, name, addr))
        .collect::<Result<Vec<_>, _>>()
        .context("starting demo backends")?;
    eprintln!("xtask: demo world: cgroup {}, netns {NAME}, {} backends", cgroup.path().display(), backends.len());

    let mut child = cli.run(&config, cgroup.path()).spawn().context("starting viking-agent")?;
    let outcome = show_and_wait(cli, &mut child, &cgroup, &netns, &config, exit_after, &stop);

    eprintln!("\nxtask: stopping the demo");
    if child.try_wait().ok().flatten().is_none() {
        // Our own child, not reaped yet: the pid is still its.
        let _ = kill_process(Pid::from_child(&child), Signal::TERM);
        let _ = process::wait_bounded(&mut child, Duration::from_secs(10));
    }
    let uninstall = cli.uninstall().status();
    drop(backends);
    drop(netns);
    drop(cgroup);
    eprintln!("xtask: removed the pins, backends, netns {NAME} and cgroup {NAME}");
    anyhow::ensure!(uninstall.is_ok_and(|s| s.success()), "viking-agent uninstall failed");
    outcome
}

fn show_and_wait(
    cli: AgentCli<'_>,
    child: &mut Child,
    cgroup: &Cgroup,
    netns: &Netns,
    config: &Path,
    exit_after: Option<Duration>,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    let ready = wait_for(Duration::from_secs(20), || {
        if stop.load(Ordering::Relaxed) {
            return Some(false);
        }
        let dump = cli.dump(true).output().ok()?;
        let json: serde_json::Value = serde_json::from_slice(&dump.stdout).ok()?;
        (json["services"].as_array()?.len() == 3).then_some(true)
    });
    match ready {
        Some(true) => {}
        Some(false) => return Ok(()),
        None => bail!("the agent did not install the demo services within 20 s (see its log above)"),
    }

    println!("\n== A client in cgroup {NAME} connects to the VIP 240.0.0.10:80 (service \"web\") ==");
    let mut command = Command::new(std::env::current_exe()?);
    command.args(["demo-client", "240.0.0.10:80", "6"]);
    process::place(&mut command, cgroup, netns)?;
    let status = command.status()?;
    anyhow::ensure!(status.success(), "the demo client failed");

    println!("\n== The kernel's view (viking-agent maps dump) ==");
    cli.dump(false).status()?;
    print_next_steps(cli.binary, config);

    let deadline = exit_after.map(|d| std::time::Instant::now() + d);
    let mut agent_running = true;
    loop {
        std::thread::sleep(Duration::from_millis(200));
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
            return Ok(());
        }
        if agent_running && let Some(status) = child.try_wait()? {
            agent_running = false;
            println!(
                "\nxtask: viking-agent exited ({status}). Its programs and maps stay pinned, so VIP \
                 connects keep working; a new agent adopts them:\n  {} run --config {} --cgroup {} --pin-dir {PIN_DIR}",
                relative(cli.binary).display(),
                relative(config).display(),
                cgroup.path().display()
            );
        }
    }
}

fn print_next_steps(agent: &Path, config: &Path) {
    let agent = relative(agent).display().to_string();
    let config = relative(config).display().to_string();
    let steps = [
        (format!("{agent} maps dump --pin-dir {PIN_DIR}"), "what the kernel holds"),
        ("cargo xtask exec -- curl -s http://240.0.0.10/".into(), "a request from inside the demo cgroup"),
        ("cargo xtask exec -- curl -s http://240.0.0.20:8080/".into(), "\"api\": random choice"),
        ("cargo xtask exec -- curl -s http://240.0.0.30/".into(), "no backends: refused at once"),
        (format!("$EDITOR {config}"), "edits apply within 1 s"),
        ("pkill -9 viking-agent".into(), "connects keep working: programs and maps are pinned"),
    ];
    println!("\n== Try next, in another terminal in {} ==", workspace_root().display());
    let width = steps.iter().map(|(command, _)| command.len()).max().unwrap_or(0);
    for (command, what) in steps {
        println!("  {command:width$}  # {what}");
    }
    println!("\nPress Ctrl-C to stop the demo and remove everything it created.");
}

fn relative(path: &Path) -> PathBuf {
    path.strip_prefix(workspace_root()).map(Path::to_path_buf).unwrap_or_else(|_| path.to_path_buf())
}

/// `cargo xtask exec -- <command>`: runs a command inside the running demo's cgroup and
/// netns (joined in that order, before exec).
pub fn exec(command: &[OsString]) -> anyhow::Result<()> {
    let cgroup_dir = viking_sandbox::cgroup::root().context("finding the cgroup v2 mount")?.join(NAME);
    let netns_path = Path::new("/run/netns").join(NAME);
    if !cgroup_dir.exists() || !netns_path.exists() {
        bail!("the demo is not running: start it with `cargo xtask run`");
    }
    let netns = File::open(&netns_path).with_context(|| format!("opening {}", netns_path.display()))?;
    let (program, args) = command.split_first().context("no command given")?;
    let mut child = Command::new(program);
    child.args(args);
    process::place_at(&mut child, &cgroup_dir, netns.as_fd())?;
    let status = child.status().with_context(|| format!("starting {}", program.to_string_lossy()))?;
    std::process::exit(status.code().unwrap_or(1));
}
