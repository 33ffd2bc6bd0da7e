//! Running `viking-testkit connect` inside a test's cgroup and netns.

use std::{
    net::SocketAddr,
    process::{Child, Command, Stdio},
};

use serde::Deserialize;

use viking_sandbox::{Cgroup, Netns, process};

/// One connect attempt as the client saw it.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Attempt {
    /// The backend's reply (its name), when the connect succeeded.
    pub reply: Option<String>,
    /// `getpeername()` of the connected socket.
    pub peer: Option<String>,
    /// The error text, when it failed.
    pub error: Option<String>,
    /// The errno, when it failed.
    pub errno: Option<i32>,
    /// How long the attempt took.
    pub elapsed_us: u64,
}

/// Options for a `connect` run.
#[derive(Clone, Copy, Debug)]
pub struct ClientOptions {
    /// Attempts (each a new socket).
    pub count: u32,
    /// Connected UDP instead of TCP.
    pub udp: bool,
    /// Pause between attempts.
    pub interval_ms: u64,
    /// Keep the sockets open this long after the last attempt.
    pub hold_ms: u64,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self { count: 1, udp: false, interval_ms: 0, hold_ms: 0 }
    }
}

/// What the client does.
#[derive(Clone, Copy, Debug)]
pub enum Mode {
    /// New sockets, `connect()` each (TCP or connected UDP).
    Connect(ClientOptions),
    /// One unconnected UDP socket, `sendto`/`recvfrom` `count` times.
    Sendto {
        /// Datagrams.
        count: u32,
    },
    /// One connected UDP socket for a while, reconnecting when it fails.
    UdpSession {
        /// Run time.
        duration_ms: u64,
    },
}

fn command(to: SocketAddr, mode: Mode) -> Command {
    let mut command = Command::new(crate::binary("viking-testkit"));
    let to = to.to_string();
    match mode {
        Mode::Connect(options) => {
            command.args(["connect", "--to", &to, "--timeout-ms", "2000"]);
            command.args(["--count", &options.count.to_string(), "--interval-ms", &options.interval_ms.to_string()]);
            command.args(["--hold-ms", &options.hold_ms.to_string()]);
            if options.udp {
                command.arg("--udp");
            }
        }
        Mode::Sendto { count } => {
            command.args(["sendto", "--to", &to, "--count", &count.to_string()]);
        }
        Mode::UdpSession { duration_ms } => {
            command.args(["udp-session", "--to", &to, "--duration-ms", &duration_ms.to_string()]);
        }
    }
    command
}

/// Runs `connect` in `cgroup` + `netns` (or only `netns` when `cgroup` is `None`) and
/// returns every attempt.
pub fn connect(cgroup: Option<&Cgroup>, netns: &Netns, to: SocketAddr, options: ClientOptions) -> Vec<Attempt> {
    collect(spawn(cgroup, netns, to, Mode::Connect(options)))
}

/// Runs the client in any mode and returns every attempt.
pub fn run(cgroup: &Cgroup, netns: &Netns, to: SocketAddr, mode: Mode) -> Vec<Attempt> {
    collect(spawn(Some(cgroup), netns, to, mode))
}

/// Starts the client without waiting for it (traffic during an agent restart, held
/// connections).
pub fn spawn(cgroup: Option<&Cgroup>, netns: &Netns, to: SocketAddr, mode: Mode) -> Child {
    let mut command = command(to, mode);
    match cgroup {
        Some(cgroup) => process::place(&mut command, cgroup, netns).expect("place client"),
        None => process::place_netns_only(&mut command, netns).expect("place client"),
    }
    command.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().expect("start viking-testkit")
}

/// The longest a client may run (its attempts each time out after 2 s; the longest test
/// run is 10,000 quick connects).
const CLIENT_LIMIT: std::time::Duration = std::time::Duration::from_secs(120);

/// Waits (bounded) for a spawned client and parses its attempts.
pub fn collect(child: Child) -> Vec<Attempt> {
    let output = process::output_bounded(child, CLIENT_LIMIT);
    assert!(output.status.success(), "viking-testkit failed: {:?}", output.status);
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|err| panic!("bad client line {line:?}: {err}")))
        .collect()
}

/// The replies of successful attempts, in order; panics on any failed attempt.
pub fn replies(attempts: &[Attempt]) -> Vec<String> {
    attempts.iter().map(|a| a.reply.clone().unwrap_or_else(|| panic!("connect failed: {a:?}"))).collect()
}
