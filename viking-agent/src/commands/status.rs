//! `viking-agent status`: asks the running agent's endpoint (`/status`); when no agent
//! answers, reads what the pins alone tell (layout, programs, services).

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    path::Path,
    time::Duration,
};

use anyhow::Context as _;

use crate::{
    dataplane::{pinned_layout, pins::PinDir},
    metrics::status::{Status, programs},
};

/// Prints the status as text or JSON.
pub fn status(pin_dir: &Path, endpoint: SocketAddr, json: bool) -> anyhow::Result<()> {
    let status = match ask(endpoint) {
        Some(status) => status,
        None => from_pins(pin_dir)?,
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

/// `GET /status` from a running agent, within a second.
fn ask(endpoint: SocketAddr) -> Option<Status> {
    let mut stream = TcpStream::connect_timeout(&endpoint, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET /status HTTP/1.1\r\nHost: {endpoint}\r\nConnection: close\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| serde_json::from_str(body).ok()).flatten()
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
