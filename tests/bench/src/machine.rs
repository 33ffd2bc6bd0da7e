//! The machine a run was measured on, for the report: results only mean something next
//! to it.

use std::process::Command;

use crate::setups::{haproxy, iptables};

/// Facts about this machine and the tools compared.
#[derive(Clone, Debug)]
pub struct Machine {
    /// `uname -r`.
    pub kernel: String,
    /// CPU model name from /proc/cpuinfo.
    pub cpu: String,
    /// Online CPUs.
    pub cores: usize,
    /// Memory in GiB.
    pub memory_gib: f64,
    /// `iptables -V`.
    pub iptables: String,
    /// `haproxy -v`, first line.
    pub haproxy: String,
    /// When the run started (UTC).
    pub date: String,
}

impl Machine {
    /// Reads the facts; a fact that cannot be read says so instead of failing the run.
    pub fn describe() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        Self {
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map_or_else(|e| format!("unknown ({e})"), |s| s.trim().to_owned()),
            cpu: field(&cpuinfo, "model name").unwrap_or("unknown CPU").to_owned(),
            cores: std::thread::available_parallelism().map_or(0, usize::from),
            memory_gib: field(&meminfo, "MemTotal")
                .and_then(|v| v.trim_end_matches(" kB").trim().parse::<f64>().ok())
                .map_or(0.0, |kib| kib / (1024.0 * 1024.0)),
            iptables: iptables::version(),
            haproxy: haproxy::version(),
            date: command_line_output(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"])),
        }
    }
}

/// The value of the first `key: value` line of a /proc file.
fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        (k.trim() == key).then_some(v.trim())
    })
}

fn command_line_output(command: &mut Command) -> String {
    command.output().map_or_else(|e| format!("unknown ({e})"), |o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_fields_are_found_by_key() {
        let text = "processor\t: 0\nmodel name\t: AMD EPYC\nMemTotal:       24576000 kB\n";
        assert_eq!(field(text, "model name"), Some("AMD EPYC"));
        assert_eq!(field(text, "MemTotal"), Some("24576000 kB"));
        assert_eq!(field(text, "flags"), None);
    }
}
