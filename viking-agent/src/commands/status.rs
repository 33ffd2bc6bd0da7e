//! `viking-agent status`: asks the running agent's endpoint (`/status`); when no agent
//! answers, reads what the pins alone tell (layout, programs, services). With
//! `--wait-ready`, waits for the agent to be ready first (systemd's `ExecStartPost`).

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    path::Path,
    time::{Duration, Instant},
};

use anyhow::Context as _;

use crate::{
    dataplane::{pinned_layout, pins::PinDir},
    metrics::status::{Status, programs},
};

/// How often `--wait-ready` asks.
const READY_POLL: Duration = Duration::from_millis(200);

/// Prints the status as text or JSON; with `wait_ready`, first waits up to that long for
/// a running agent that reports itself ready, and fails if none does.
pub fn status(pin_dir: &Path, endpoint: SocketAddr, json: bool, wait_ready: Option<Duration>) -> anyhow::Result<()> {
    let status = match wait_ready {
        Some(limit) => wait_until_ready(endpoint, limit)?,
        None => match ask(endpoint)? {
            Some(status) => status,
            None => from_pins(pin_dir)?,
        },
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(());
    }
    match &status.agent_version {
        Some(version) => println!(
            "agent:     {version}, running ({})",
            if status.ready == Some(true) { "ready" } else { "not ready" }
        ),
        None => println!("agent:     not running (no answer on {endpoint}); from the pins"),
    }
    println!("pins:      {} (layout {})", status.pin_dir, status.layout.map_or("-".into(), |l| l.to_string()));
    if let Some(cgroup) = &status.cgroup {
        println!("cgroup:    {cgroup}");
    }
    println!("services:  {}", status.services);
    if let (Some((slots, slot_limit)), Some((backends, backend_limit))) = (status.service_slots, status.backends) {
        println!("maps:      {slots} of {slot_limit} service slots, {backends} of {backend_limit} backends");
    }
    let attached: Vec<String> = status
        .programs
        .iter()
        .map(|p| match p.id {
            Some(id) => format!("{} (id {id})", p.name),
            None => format!("{} (missing)", p.name),
        })
        .collect();
    println!("programs:  {}", attached.join(", "));
    for source in &status.sources {
        println!(
            "source:    {} {}",
            source.name,
            if source.reported { "applied" } else { "waiting for its first answer" }
        );
    }
    Ok(())
}

/// Asks until the agent reports itself ready, or `limit` has passed.
fn wait_until_ready(endpoint: SocketAddr, limit: Duration) -> anyhow::Result<Status> {
    let started = Instant::now();
    loop {
        let last = match ask(endpoint) {
            Ok(Some(status)) if status.ready == Some(true) => return Ok(status),
            Ok(Some(_)) => "running, not ready".to_owned(),
            Ok(None) => format!("no answer on {endpoint}"),
            Err(err) => format!("{err:#}"),
        };
        anyhow::ensure!(started.elapsed() < limit, "the agent was not ready within {limit:?}: {last}");
        std::thread::sleep(READY_POLL);
    }
}

/// `GET /status` from a running agent: `None` when nothing answers (within a second); an
/// error when something answers but not with a status.
fn ask(endpoint: SocketAddr) -> anyhow::Result<Option<Status>> {
    let Ok(mut stream) = TcpStream::connect_timeout(&endpoint, Duration::from_secs(1)) else {
        return Ok(None);
    };
    let unanswered = |what: &str| format!("{endpoint} accepted the connection but {what}");
    stream.set_read_timeout(Some(Duration::from_secs(2))).with_context(|| unanswered("cannot be read"))?;
    write!(stream, "GET /status HTTP/1.1\r\nHost: {endpoint}\r\nConnection: close\r\n\r\n")
        .with_context(|| unanswered("took no request"))?;
    let mut response = String::new();
    stream.read_to_string(&mut response).with_context(|| unanswered("sent no answer"))?;
    let (head, body) = response.split_once("\r\n\r\n").with_context(|| unanswered("sent no HTTP answer"))?;
    let status_line = head.lines().next().unwrap_or_default();
    anyhow::ensure!(status_line.starts_with("HTTP/1.1 200"), "{endpoint} answered /status with {status_line:?}");
    let status = serde_json::from_str(body).with_context(|| format!("{endpoint} answered /status with no status"))?;
    Ok(Some(status))
}

/// What the pins tell without an agent.
fn from_pins(pin_dir: &Path) -> anyhow::Result<Status> {
    let pins = PinDir::new(pin_dir);
    let layout = pinned_layout(&pins)?.map(|l| l.version);
    anyhow::ensure!(layout.is_some(), "no agent answers and nothing is pinned at {}", pin_dir.display());
    let dump = super::maps::read(pin_dir).context("reading the pinned maps")?;
    Ok(Status {
        layout,
        pin_dir: pin_dir.display().to_string(),
        services: dump.services.len(),
        programs: programs(&pins),
        ..Status::default()
    })
}
