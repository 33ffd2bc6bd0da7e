//! A real `dockerd` per test: its own data and exec roots, socket, and cgroup parent (the
//! test's cgroup, so every container is under the programs the test attached), no default
//! bridge and no iptables rules (the host's network configuration is never touched).
//! Containers run a busybox image made locally (`docker import`, no registry needed) on an
//! `--internal` network, so no traffic leaves the machine.

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::Duration,
};

use rustix::process::{Pid, Signal, kill_process};
use viking_sandbox::{Cgroup, unique_name, wait_for};

/// The image every test container runs.
pub const IMAGE: &str = "viking-test-busybox";
/// Busybox applets linked into the image.
const APPLETS: [&str; 9] = ["sh", "nc", "httpd", "sleep", "echo", "mkdir", "cat", "nslookup", "printf"];

/// A dockerd owned by one test; containers, networks, the daemon and its directories are
/// removed on drop.
#[derive(Debug)]
pub struct TestDocker {
    data_root: tempfile::TempDir,
    /// Short paths (unix socket paths are limited to 108 bytes).
    run_dir: PathBuf,
    cgroup_name: String,
    daemon: Option<Child>,
}

impl TestDocker {
    /// Starts dockerd with containers under `cgroup` and imports the test image.
    pub fn start(cgroup: &Cgroup) -> Self {
        let data_root = tempfile::Builder::new().prefix("viking-dockerd").tempdir().expect("tempdir");
        let run_dir = Path::new("/run").join(unique_name("dockerd"));
        std::fs::create_dir_all(&run_dir).expect("run dir");
        let cgroup_name = cgroup.path().file_name().expect("cgroup name").to_string_lossy().into_owned();
        let mut docker = Self { data_root, run_dir, cgroup_name, daemon: None };
        docker.launch();
        docker.import_image();
        docker
    }

    /// `unix://…` address of the daemon, for the agent's `[docker] host`.
    pub fn host(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    fn socket(&self) -> PathBuf {
        self.run_dir.join("docker.sock")
    }

    fn launch(&mut self) {
        let log = std::fs::File::create(self.data_root.path().join("dockerd.log")).expect("log");
        let daemon = Command::new("dockerd")
            .arg("--host")
            .arg(self.host())
            .arg("--data-root")
            .arg(self.data_root.path().join("data"))
            .arg("--exec-root")
            .arg(self.run_dir.join("exec"))
            .arg("--pidfile")
            .arg(self.run_dir.join("docker.pid"))
            .args(["--bridge=none", "--iptables=false", "--ip6tables=false", "--userland-proxy=false"])
            .arg(format!("--cgroup-parent=/{}", self.cgroup_name))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start dockerd (is docker.io installed? `cargo xtask setup`)");
        self.daemon = Some(daemon);
        let up = wait_for(Duration::from_secs(30), || self.docker(&["version"]).status.success().then_some(()));
        assert!(up.is_some(), "dockerd did not start:\n{}", self.daemon_log());
    }

    /// Stops dockerd (its containers die with it) and starts it again on the same roots.
    pub fn restart(&mut self) {
        self.stop_daemon();
        self.launch();
    }

    fn stop_daemon(&mut self) {
        if let Some(mut daemon) = self.daemon.take() {
            // Our own child, not reaped yet: the pid is still its.
            let _ = kill_process(Pid::from_child(&daemon), Signal::TERM);
            let stopped = wait_for(Duration::from_secs(20), || daemon.try_wait().ok().flatten());
            if stopped.is_none() {
                let _ = daemon.kill();
                let _ = daemon.wait();
            }
        }
    }

    /// dockerd's own log, for failure messages.
    pub fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.data_root.path().join("dockerd.log")).unwrap_or_default()
    }

    /// The docker CLI against this daemon, bounded to two minutes (`timeout`), not yet run.
    pub fn command<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Command {
        let mut command = Command::new("timeout");
        command.args(["--kill-after=5", "120", "docker", "-H"]).arg(self.host()).args(args);
        command
    }

    /// Runs the docker CLI against this daemon, for at most two minutes.
    pub fn docker(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("docker CLI")
    }

    /// Runs the docker CLI and returns its stdout; panics with stderr on failure.
    pub fn ok(&self, args: &[&str]) -> String {
        let output = self.docker(args);
        assert!(output.status.success(), "docker {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// Builds the busybox image from this machine's static busybox (package busybox-static).
    fn import_image(&self) {
        let root = tempfile::tempdir().expect("tempdir");
        for dir in ["bin", "etc", "tmp", "www"] {
            std::fs::create_dir_all(root.path().join(dir)).expect("image dir");
        }
        std::fs::copy("/bin/busybox", root.path().join("bin/busybox")).expect("copy /bin/busybox (busybox-static)");
        for applet in APPLETS {
            std::os::unix::fs::symlink("busybox", root.path().join("bin").join(applet)).expect("applet link");
        }
        let tar = Command::new("tar").arg("-C").arg(root.path()).args(["-c", "."]).output().expect("tar");
        assert!(tar.status.success(), "tar failed");
        let mut import = self
            .command(&["import", "-", IMAGE])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("docker import");
        import.stdin.take().expect("stdin").write_all(&tar.stdout).expect("send image");
        assert!(import.wait().expect("docker import").success(), "docker import failed");
    }

    /// Creates an `--internal` network with `subnet` (e.g. `10.210.0.0/24`); its gateway
    /// (the `.1` address) is on a bridge in the host namespace.
    pub fn network(&self, name: &str, subnet: &str) {
        self.ok(&["network", "create", "--internal", "--subnet", subnet, name]);
    }

    /// Starts a busybox HTTP server answering `reply` at `ip:80` on `network`.
    pub fn http_backend(&self, name: &str, network: &str, ip: &str, reply: &str) {
        let script = format!("echo {reply} > /www/index.html && exec httpd -f -p 80 -h /www");
        self.ok(&["run", "-d", "--name", name, "--network", network, "--ip", ip, IMAGE, "sh", "-c", &script]);
    }

    /// Starts a long-running container (`sleep`) with extra `docker run` arguments.
    pub fn idle(&self, name: &str, network: &str, extra: &[&str]) {
        let mut args = vec!["run", "-d", "--name", name, "--network", network];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[IMAGE, "sleep", "600"]);
        self.ok(&args);
    }

    /// Inside container `name`: an HTTP/1.0 GET of `host:port` with `nc`; returns the body,
    /// or `Err(stderr)` (e.g. `Permission denied` when the policy refuses).
    pub fn http_get(&self, name: &str, host: &str, port: u16) -> Result<String, String> {
        let script = format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {host} {port}");
        http_body(&self.docker(&["exec", name, "sh", "-c", &script]))
    }

    /// dockerd's `--cgroup-parent`, for the agent's `[docker] cgroup_parent`.
    pub fn cgroup_parent(&self) -> String {
        format!("/{}", self.cgroup_name)
    }

    /// `docker run --rm` of a container whose first action is an HTTP/1.0 GET of
    /// `host:port` with `nc`; returns the body or `Err(output)`.
    pub fn run_http_get(
        &self,
        name: &str,
        network: &str,
        extra: &[&str],
        host: &str,
        port: u16,
    ) -> Result<String, String> {
        http_body(&self.command(&first_get_args(name, network, extra, host, port)).output().expect("docker CLI"))
    }

    /// The cgroup id of a running container: what the kernel programs key policy by.
    pub fn cgroup_id(&self, name: &str) -> u64 {
        let pid = self.ok(&["inspect", "-f", "{{.State.Pid}}", name]);
        let root = viking_sandbox::cgroup::root().expect("cgroup2");
        let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("container cgroup");
        let path = text.lines().find_map(|l| l.strip_prefix("0::")).expect("v2 line");
        std::os::unix::fs::MetadataExt::ino(
            &std::fs::metadata(root.join(path.trim_start_matches('/'))).expect("cgroup dir"),
        )
    }
}

impl Drop for TestDocker {
    fn drop(&mut self) {
        if self.daemon.is_some() {
            let ids = self.docker(&["ps", "-aq"]);
            let ids: Vec<String> = String::from_utf8_lossy(&ids.stdout).split_whitespace().map(str::to_owned).collect();
            if !ids.is_empty() {
                let mut args = vec!["rm", "-f"];
                args.extend(ids.iter().map(String::as_str));
                let _ = self.docker(&args);
            }
            let networks = self.docker(&["network", "ls", "-q", "--filter", "type=custom"]);
            for id in String::from_utf8_lossy(&networks.stdout).split_whitespace() {
                let _ = self.docker(&["network", "rm", id]);
            }
        }
        self.stop_daemon();
        // Mounts left under the roots (overlay layers, netns files) would block removal.
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "grep -E ' ({}|{})(/| )' /proc/self/mounts | cut -d' ' -f2 | sort -r | xargs -r umount -l",
                self.data_root.path().display(),
                self.run_dir.display()
            ))
            .status();
        let _ = std::fs::remove_dir_all(&self.run_dir);
        // cgroup v1 hierarchies get a directory for the cgroup parent too.
        if let Ok(controllers) = std::fs::read_dir("/sys/fs/cgroup") {
            for controller in controllers.flatten() {
                let _ = std::fs::remove_dir(controller.path().join(&self.cgroup_name));
            }
        }
    }
}

/// Arguments of `docker run --rm` for a container named `name` whose first action is an
/// HTTP/1.0 GET of `host:port` with `nc`, printing the answer.
pub fn first_get_args(name: &str, network: &str, extra: &[&str], host: &str, port: u16) -> Vec<String> {
    let script = format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {host} {port}");
    let mut args: Vec<String> = ["run", "--rm", "--name", name, "--network", network].map(String::from).into();
    args.extend(extra.iter().map(|arg| (*arg).to_owned()));
    args.extend([IMAGE, "sh", "-c", &script].map(String::from));
    args
}

/// The body of the HTTP answer an `nc` GET printed, or `Err(stderr and stdout)` when it
/// failed (e.g. `Permission denied` when the policy refuses).
fn http_body(output: &Output) -> Result<String, String> {
    let stdout = String::from_utf8_lossy(&output.stdout);
    match stdout.split("\r\n\r\n").nth(1) {
        Some(body) if output.status.success() => Ok(body.trim().to_owned()),
        _ => Err(format!("{}{}", String::from_utf8_lossy(&output.stderr).trim(), stdout.trim())),
    }
}
