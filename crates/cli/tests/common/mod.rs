//! Shared helpers: run the real `airlock` binary and parse its JSON result.
#![allow(dead_code)]

pub mod agent_sandbox;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

/// The binary under test. The rootless pass runs copies of the test binaries from a directory the
/// unprivileged user can read and points `AIRLOCK_BIN` at a copy of the binary there.
pub fn airlock_bin() -> PathBuf {
    std::env::var_os("AIRLOCK_BIN").map(PathBuf::from).unwrap_or_else(|| env!("CARGO_BIN_EXE_airlock").into())
}

/// Result of one `airlock run`.
pub struct Run {
    /// Exit status of `airlock` itself.
    pub status: i32,
    /// The JSON document it printed on stdout.
    pub json: Value,
    /// Its stderr.
    pub stderr: String,
}

impl Run {
    /// The payload's stdout.
    pub fn stdout(&self) -> &str {
        self.json["stdout"].as_str().unwrap_or_default()
    }
    /// The payload's stderr.
    pub fn payload_stderr(&self) -> &str {
        self.json["stderr"].as_str().unwrap_or_default()
    }
    /// Airlock's outcome name.
    pub fn outcome(&self) -> &str {
        self.json["outcome"].as_str().unwrap_or_default()
    }
    /// The error code, if any.
    pub fn code(&self) -> &str {
        self.json["error"]["code"].as_str().unwrap_or_default()
    }
}

/// Run `airlock run FLAGS -- CMD` and parse the result.
pub fn run(flags: &[&str], cmd: &[&str]) -> Run {
    run_with_stdin(flags, cmd, None)
}

/// Like [`run`], feeding `stdin` to airlock.
pub fn run_with_stdin(flags: &[&str], cmd: &[&str], stdin: Option<&str>) -> Run {
    let mut command = Command::new(airlock_bin());
    command.arg("run").args(flags);
    if !cmd.is_empty() {
        command.arg("--").args(cmd);
    }
    let out = spawn_output(command, stdin);
    let text = String::from_utf8_lossy(&out.stdout);
    let json: Value = serde_json::from_str(text.trim()).unwrap_or_else(|e| {
        panic!(
            "airlock printed no JSON document ({e}):\nstdout: {text}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    Run {
        status: out.status.code().unwrap_or(-1),
        json,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Spawn a prepared command, optionally writing to its stdin, and wait for it.
pub fn spawn_output(mut command: Command, stdin: Option<&str>) -> Output {
    command.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().expect("spawn airlock");
    if let Some(data) = stdin {
        child.stdin.take().unwrap().write_all(data.as_bytes()).unwrap();
    }
    child.wait_with_output().expect("wait for airlock")
}

/// Run a shell snippet in a default sandbox.
pub fn sh(script: &str) -> Run {
    run(&[], &["/bin/sh", "-c", script])
}

/// Run Python code in a default sandbox.
pub fn py(code: &str) -> Run {
    run(&[], &["python3", "-c", code])
}

/// Whether the tests run as root.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}
