//! Builds the kernel programs (`viking-ebpf`'s binaries, for `bpfel-unknown-none`) from a
//! build script and copies them into its `OUT_DIR`, for `viking-agent/build.rs` and
//! `tests/bench/build.rs`.
//!
//! The inner build is a second cargo, with Debian's toolchain (`rustup run debian cargo`;
//! `cargo xtask setup` registers it): that toolchain ships a prebuilt `core` for the BPF
//! target, so no `-Z build-std` (which needs the `rust-src` this machine cannot have).
//! See docs/toolchain.md.
//!
//! Its output is kept back: a build that works shows one line (plus the compiler's
//! warnings, if there are any), a build that fails shows everything the inner cargo
//! printed. aya-build 0.2.0, used before, forwarded each line as it came as a `warning:` of
//! the crate being built, a `Compiling` line for every crate of the kernel build; a `quiet`
//! setting of the inner cargo hid those, and with them any sign that the eBPF build ran.

use std::{
    env,
    ffi::OsString,
    io::{self, BufRead, BufReader},
    path::PathBuf,
    process::{Command, ExitStatus, Stdio},
    sync::mpsc,
    time::Instant,
};

/// The package holding the kernel programs.
const PACKAGE: &str = "viking-ebpf";
/// The name under which `cargo xtask setup` registers Debian's toolchain with rustup.
const TOOLCHAIN: &str = "debian";

/// Why the programs could not be built. A build script prints it and nothing else, so each
/// message carries its cause.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A variable cargo sets for build scripts is missing.
    #[error("{0} is not set: run this from a build script")]
    NotInBuildScript(&'static str),
    /// The target's byte order has no BPF target.
    #[error("no BPF target for byte order {0:?}")]
    Endian(String),
    /// The inner cargo could not be started.
    #[error("cannot run `rustup run {TOOLCHAIN} cargo` (`cargo xtask setup` installs what it needs): {0}")]
    Spawn(io::Error),
    /// Its output could not be read, or its exit waited for.
    #[error("reading the output of the eBPF build: {0}")]
    Output(io::Error),
    /// It failed; what it printed is on stderr.
    #[error("building the eBPF programs ({PACKAGE}) failed ({0}); its output is above")]
    Failed(ExitStatus),
    /// A built program could not be copied into `OUT_DIR`.
    #[error("copying {} to {}: {error}", from.display(), to.display())]
    Copy {
        /// The built program.
        from: PathBuf,
        /// Where it was to go.
        to: PathBuf,
        /// Why it could not.
        error: io::Error,
    },
}

/// What the inner cargo printed, in the order it arrived.
enum Line {
    /// A line of its stderr (`Compiling …`, cargo's own errors), or a stdout line that is
    /// not JSON.
    Text(String),
    /// A compiler diagnostic, rendered as rustc shows it.
    Diagnostic(String),
    /// A binary: its name, its path, and whether it was already up to date.
    Program(String, PathBuf, bool),
}

/// Builds `viking-ebpf` (at `package_dir`, relative to the calling build script's package)
/// and copies each of its binaries to `$OUT_DIR/<name>`.
pub fn build_programs(package_dir: &str) -> Result<(), BuildError> {
    // The binaries: cargo's build-dependency on viking-ebpf covers only its library.
    println!("cargo:rerun-if-changed={package_dir}");
    let out_dir = PathBuf::from(var("OUT_DIR")?);
    let target = match var("CARGO_CFG_TARGET_ENDIAN")?.to_str() {
        Some("little") => "bpfel-unknown-none",
        Some("big") => "bpfeb-unknown-none",
        other => return Err(BuildError::Endian(format!("{other:?}"))),
    };
    let arch = var("CARGO_CFG_TARGET_ARCH")?;

    let mut rustflags = OsString::from("--cfg=bpf_target_arch=\"");
    // aya-ebpf picks the layout of `pt_regs` by it (the host's architecture).
    rustflags.push(&arch);
    rustflags.push("\"\x1f-Cdebuginfo=2\x1f-Clink-arg=--btf");
    let started = Instant::now();
    let mut child = Command::new("rustup")
        .args(["run", TOOLCHAIN, "cargo", "build", "--package", PACKAGE, "--bins", "--release"])
        .args(["--target", target, "--message-format=json", "--target-dir"])
        .arg(out_dir.join("ebpf-target"))
        .env("CARGO_ENCODED_RUSTFLAGS", rustflags)
        // The kernel crates use unstable features (inline asm on the BPF target). One
        // crate name is not enough (aya-ebpf and viking-ebpf), and rustc takes no list.
        .env("RUSTC_BOOTSTRAP", "1")
        // The outer build's compiler (rustup's stable) would replace Debian's.
        .env_remove("RUSTC")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(BuildError::Spawn)?;

    // Both pipes are read at once (either could fill and stall the build), into one
    // channel, so that a failure shows the lines in about the order cargo printed them.
    let (lines, received) = mpsc::channel();
    let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
    let stderr = BufReader::new(child.stderr.take().expect("piped stderr"));
    let readers = [
        std::thread::spawn({
            let lines = lines.clone();
            move || forward(stdout, &lines, parse_message)
        }),
        std::thread::spawn(move || forward(stderr, &lines, |line| Some(Line::Text(line)))),
    ];
    let (mut output, mut diagnostics, mut programs) = (Vec::new(), Vec::new(), Vec::new());
    for line in received {
        match line {
            Line::Text(text) => output.push(text),
            Line::Diagnostic(text) => {
                output.push(text.clone());
                diagnostics.push(text);
            }
            Line::Program(name, path, fresh) => programs.push((name, path, fresh)),
        }
    }
    for reader in readers {
        reader.join().expect("output reader panicked").map_err(BuildError::Output)?;
    }
    let status = child.wait().map_err(BuildError::Output)?;
    if !status.success() {
        for text in &output {
            eprintln!("{text}");
        }
        return Err(BuildError::Failed(status));
    }

    // A binary is rebuilt whenever anything it is made of changed.
    let rebuilt = programs.iter().any(|(_, _, fresh)| !fresh);
    for (name, from, _) in programs {
        let to = out_dir.join(name);
        std::fs::copy(&from, &to).map_err(|error| BuildError::Copy { from, to, error })?;
    }
    // The one line. Cargo also reruns this script when nothing in the programs changed (its
    // own rebuild, a touched file), hence the two wordings.
    if rebuilt {
        println!(
            "cargo:warning=built the eBPF programs ({PACKAGE}, {target}) in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    } else {
        println!("cargo:warning=the eBPF programs ({PACKAGE}, {target}) are up to date");
    }
    // Warnings of the kernel code: nothing else checks it (a host build of it is empty).
    for line in diagnostics.iter().flat_map(|text| text.trim_end().lines()) {
        println!("cargo:warning={line}");
    }
    Ok(())
}

/// A variable cargo sets for build scripts.
fn var(name: &'static str) -> Result<OsString, BuildError> {
    env::var_os(name).ok_or(BuildError::NotInBuildScript(name))
}

/// Sends what `parse` makes of each line of `stream` until the stream ends.
fn forward(stream: impl BufRead, to: &mpsc::Sender<Line>, parse: fn(String) -> Option<Line>) -> io::Result<()> {
    for line in stream.lines() {
        if let Some(line) = parse(line?) {
            // The receiver lives until every sender is gone.
            let _ = to.send(line);
        }
    }
    Ok(())
}

/// One line of `--message-format=json`: a built binary, a diagnostic, or `None` for what
/// else cargo reports there (libraries built, `build-finished`, ...).
fn parse_message(line: String) -> Option<Line> {
    let Ok(message) = serde_json::from_str::<serde_json::Value>(&line) else {
        return Some(Line::Text(line));
    };
    match message["reason"].as_str()? {
        "compiler-artifact" => {
            let name = message["target"]["name"].as_str()?;
            let path = message["executable"].as_str()?;
            let fresh = message["fresh"].as_bool() == Some(true);
            Some(Line::Program(name.to_owned(), PathBuf::from(path), fresh))
        }
        "compiler-message" => {
            // Rendered with its blank line after it, as cargo shows it.
            let rendered = message["message"]["rendered"].as_str()?;
            Some(Line::Diagnostic(rendered.strip_suffix('\n').unwrap_or(rendered).to_owned()))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn cargo_messages_become_programs_diagnostics_or_nothing() {
        let artifact = r#"{"reason":"compiler-artifact","target":{"name":"viking-ebpf"},"executable":"/t/viking-ebpf","fresh":false}"#;
        assert!(matches!(
            parse_message(artifact.into()),
            Some(Line::Program(name, path, false)) if name == "viking-ebpf" && path == Path::new("/t/viking-ebpf")
        ));
        let unchanged = artifact.replace(r#""fresh":false"#, r#""fresh":true"#);
        assert!(matches!(parse_message(unchanged), Some(Line::Program(_, _, true))));
        let library = r#"{"reason":"compiler-artifact","target":{"name":"aya_ebpf"},"executable":null}"#;
        assert!(parse_message(library.into()).is_none());
        let warning = r#"{"reason":"compiler-message","message":{"rendered":"warning: unused\n  --> a.rs\n\n"}}"#;
        assert!(matches!(
            parse_message(warning.into()),
            Some(Line::Diagnostic(text)) if text == "warning: unused\n  --> a.rs\n"
        ));
        assert!(parse_message(r#"{"reason":"build-finished","success":true}"#.into()).is_none());
        assert!(matches!(parse_message("not json".into()), Some(Line::Text(text)) if text == "not json"));
    }
}
