//! The container-policy benchmark (`viking-bench containers`, writes
//! `benchmarks-containers.md`): a real dockerd whose containers connect to a VIP as their
//! very first action, with the real agent in `off` and in `enforce` mode.
//!
//! It records what issue 11 asks of enforce mode: how many undeclared first connects get
//! through (target 0), how many declared ones succeed on their first try (target ≥ 99 of
//! 100), and what policy costs a container's start: the median time from `docker run` to the
//! answer on its stdout, enforce against off, in interleaved rounds so both see the same
//! machine. It uses the integration tests' harness (`viking-tests`): the same dockerd,
//! image, cgroups and agent.

use std::{
    fmt::Write as _,
    io::Read as _,
    path::Path,
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use viking_tests::{
    Agent, Cgroup,
    config::{ServiceSpec, render},
    docker::{TestDocker, first_get_args},
    pins,
};

use crate::machine::Machine;

/// Containers per kind and mode.
const CONTAINERS: usize = 100;
/// Rounds the runs are interleaved in (off, then enforce, in each).
const ROUNDS: usize = 5;
/// Undeclared containers started at once, as on a busy host.
const PARALLEL_UNDECLARED: usize = 4;
/// What the web backend answers.
const BODY: &str = "web-backend";
/// The web VIP the containers connect to.
const VIP: &str = "240.0.0.10";

/// The outcome of one container's first connect.
#[derive(Debug)]
struct FirstConnect {
    /// From `docker run` until the body appeared on its stdout, if it did.
    answered_after: Option<Duration>,
    /// stdout and stderr, for the refusals.
    output: String,
}

/// What one mode measured.
#[derive(Debug, Default)]
struct ModeResult {
    declared: Vec<FirstConnect>,
    undeclared: Vec<FirstConnect>,
    /// Undeclared connects the kernel backstop refused (no entry yet), from `maps dump`.
    backstop_refusals: u64,
}

/// Runs the benchmark and writes the report to `path`; returns the report.
pub fn run(machine: &Machine, command_line: &str, path: &Path) -> anyhow::Result<String> {
    let cgroup = Cgroup::unique().context("creating the benchmark's cgroup")?;
    let docker = TestDocker::start(&cgroup);
    let pins = pins();
    docker.network("net", "10.219.0.0/24");
    docker.http_backend("web-0", "net", "10.219.0.10", BODY);
    let web = ServiceSpec::tcp("web", VIP, 80, &["10.219.0.10:80".parse()?]);
    let config = |mode: &str| {
        format!(
            "{}[docker]\nhost = {:?}\npolicy = {mode:?}\ncgroup_parent = {:?}\n",
            render(std::slice::from_ref(&web)),
            docker.host(),
            docker.cgroup_parent()
        )
    };

    let (mut off, mut enforce) = (ModeResult::default(), ModeResult::default());
    let per_round = CONTAINERS / ROUNDS;
    for round in 0..ROUNDS {
        for (mode, result) in [("off", &mut off), ("enforce", &mut enforce)] {
            crate::interrupt::check()?;
            eprintln!("viking-bench: containers, round {}/{ROUNDS}, {mode}", round + 1);
            let agent = Agent::start(&cgroup, &pins, &config(mode));
            anyhow::ensure!(
                agent.wait_log("docker: listed containers", Duration::from_secs(10)),
                "the agent did not list containers:\n{}",
                agent.log()
            );
            for n in 0..per_round {
                let name = format!("declared-{mode}-{round}-{n}");
                result.declared.push(first_connect(&docker, &name, &["--label", "viking.connect_to=web"])?);
            }
            if mode == "enforce" {
                let backstop = || agent.dump()["container_scope"]["refused"].as_u64().unwrap_or(0);
                let before = backstop();
                for batch in 0..per_round.div_ceil(PARALLEL_UNDECLARED) {
                    let names: Vec<String> = (0..PARALLEL_UNDECLARED.min(per_round - batch * PARALLEL_UNDECLARED))
                        .map(|n| format!("undeclared-{round}-{batch}-{n}"))
                        .collect();
                    let outcomes: Vec<anyhow::Result<FirstConnect>> = std::thread::scope(|scope| {
                        let runs: Vec<_> =
                            names.iter().map(|name| scope.spawn(|| first_connect(&docker, name, &[]))).collect();
                        runs.into_iter().map(|run| run.join().expect("docker run thread")).collect()
                    });
                    for outcome in outcomes {
                        result.undeclared.push(outcome?);
                    }
                }
                result.backstop_refusals += backstop().saturating_sub(before);
            }
        }
    }
    let text = report(&off, &enforce, machine, command_line);
    std::fs::write(path, &text).with_context(|| format!("writing {}", path.display()))?;
    Ok(text)
}

/// `docker run --rm` of a container whose first action is a GET of the web VIP, timed until
/// the body is on its stdout.
fn first_connect(docker: &TestDocker, name: &str, extra: &[&str]) -> anyhow::Result<FirstConnect> {
    let start = Instant::now();
    let mut child = docker
        .command(&first_get_args(name, "net", extra, VIP, 80))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting docker run")?;
    let mut stdout = child.stdout.take().context("docker run stdout")?;
    let (mut seen, mut chunk, mut answered_after) = (Vec::new(), [0u8; 4096], None);
    loop {
        let read = stdout.read(&mut chunk).context("reading docker run's stdout")?;
        if read == 0 {
            break;
        }
        seen.extend_from_slice(&chunk[..read]);
        if answered_after.is_none() && String::from_utf8_lossy(&seen).contains(BODY) {
            answered_after = Some(start.elapsed());
        }
    }
    let mut errors = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        stderr.read_to_string(&mut errors).context("reading docker run's stderr")?;
    }
    child.wait().context("waiting for docker run")?;
    Ok(FirstConnect { answered_after, output: format!("{}{}", String::from_utf8_lossy(&seen), errors) })
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples.get(samples.len() / 2).copied().unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn report(off: &ModeResult, enforce: &ModeResult, machine: &Machine, command_line: &str) -> String {
    let answered = |runs: &[FirstConnect]| -> Vec<Duration> { runs.iter().filter_map(|r| r.answered_after).collect() };
    let (mut off_times, mut enforce_times) = (answered(&off.declared), answered(&enforce.declared));
    let (off_median, enforce_median) = (median(&mut off_times), median(&mut enforce_times));
    let through = answered(&enforce.undeclared).len();
    let refused_by_policy = enforce.undeclared.iter().filter(|r| r.output.contains("Permission denied")).count();
    let mut text = String::new();
    let _ = writeln!(text, "# Container policy benchmark\n");
    let _ = writeln!(text, "{}\n", machine.generated_by(command_line));
    let _ = writeln!(
        text,
        "A real dockerd (cgroupfs driver, containers under the benchmark's cgroup) runs \
         busybox containers whose first action is `nc` to the web VIP {VIP}:80; the real \
         agent runs with `[docker] policy = \"off\"` or `\"enforce\"`, in {ROUNDS} interleaved \
         rounds of {} containers each. **Declared** containers carry \
         `viking.connect_to=web` and start one at a time, timed from `docker run` until the \
         answer is on their stdout; **undeclared** ones (enforce only) start \
         {PARALLEL_UNDECLARED} at once.\n",
        CONTAINERS / ROUNDS
    );
    let _ = writeln!(
        text,
        "| mode | declared: first connect works | median `docker run` → answer | undeclared: got through | refused with `EACCES` | of them by the backstop |"
    );
    let _ = writeln!(text, "|---|---:|---:|---:|---:|---:|");
    let _ = writeln!(
        text,
        "| off | {} of {} | {:.1} ms | – | – | – |",
        off_times.len(),
        off.declared.len(),
        ms(off_median)
    );
    let _ = writeln!(
        text,
        "| enforce | {} of {} | {:.1} ms | {through} of {} | {refused_by_policy} | {} |\n",
        enforce_times.len(),
        enforce.declared.len(),
        ms(enforce_median),
        enforce.undeclared.len(),
        enforce.backstop_refusals
    );
    let cost = ms(enforce_median) - ms(off_median);
    let verdict = |met: bool| if met { "met" } else { "**missed**" };
    let _ = writeln!(text, "## Targets\n");
    let _ = writeln!(
        text,
        "- undeclared first connects through in enforce mode: {through} against 0: {}",
        verdict(through == 0)
    );
    let _ = writeln!(
        text,
        "- declared first connects that work: {} of {} against ≥ 99 of 100: {}",
        enforce_times.len(),
        enforce.declared.len(),
        verdict(enforce_times.len() * 100 >= enforce.declared.len() * 99)
    );
    let _ = writeln!(
        text,
        "- median `docker run` → answer, enforce minus off: {cost:+.1} ms against ≤ +10 ms: {}",
        verdict(cost <= 10.0)
    );
    text
}
