//! Starting one kernel: its runner, the pipes to and from it, and the wait until it is ready.
//!
//! The agent makes the kernel's stdout, stderr and control pipes itself and hands the write
//! ends down through the runner; the read ends and the request pipe go to the runtime once the
//! kernel is ready. The runner stays the kernel's parent and subreaper: it ends everything the
//! kernel started when the kernel ends or is killed, and a waiter thread reaps it.

use std::ffi::OsString;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::process::{ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{PollFd, PollFlags, PollTimeout};

use crate::protocol::{ContextStartRequest, Language};

/// How long a kernel may take to report that it is ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Most bytes of what a kernel printed before it failed that its error quotes.
const EARLY_OUTPUT_BYTES: usize = 4096;

/// A kernel that was started.
pub(super) struct Kernel {
    /// The request pipe.
    requests: ChildStdin,
    pub(super) runner_pid: i32,
    /// Read ends of stdout and stderr.
    outputs: [File; 2],
    control: File,
}

/// Write `{"type": "exited", "how": ...}` on a kernel's control pipe once it has ended, then
/// close the agent's end, which was the last: whoever reads the pipe learns how the kernel
/// ended, then reaches its end. The line starts with a newline, which ends any line the kernel
/// was killed in the middle of (readers skip such a line as not JSON). Never blocks: with a
/// full pipe the line is left out.
fn report_end(control: OwnedFd, how: &str) {
    let line = format!("\n{}\n", serde_json::json!({"type": "exited", "how": how}));
    if fcntl(control.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).is_ok() {
        let _ = nix::unistd::write(&control, line.as_bytes());
    }
}

/// The program and arguments that start a language's kernel.
fn kernel_argv(language: Language) -> Vec<String> {
    let (program, lead, source): (&str, &[&str], &str) = match language {
        Language::Python => ("python3", &["-c"], include_str!("../kernels/python.py")),
        Language::Javascript => ("node", &["-e"], include_str!("../kernels/node.js")),
        Language::Bash => ("bash", &["--norc", "--noprofile", "-c"], include_str!("../kernels/bash.sh")),
    };
    std::iter::once(program).chain(lead.iter().copied()).chain([source]).map(str::to_owned).collect()
}

fn nonblocking_pipe() -> nix::Result<(File, OwnedFd)> {
    let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    fcntl(read.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
    Ok((File::from(read), write))
}

impl Kernel {
    /// Start `spec`'s kernel through a runner (`runner` is the program and leading arguments of
    /// `airlock agent-run`). `on_exit` is called, on a thread of its own, once the runner ended.
    pub(super) fn spawn(
        runner: &[OsString],
        spec: &ContextStartRequest,
        on_exit: impl FnOnce() + Send + 'static,
    ) -> Result<Kernel, String> {
        let Some((program, lead)) = runner.split_first() else {
            return Err("no runner configured".to_owned());
        };
        let pipes =
            || -> nix::Result<_> { Ok((nonblocking_pipe()?, nonblocking_pipe()?, nonblocking_pipe()?)) };
        let ((out_read, out_write), (err_read, err_write), (control_read, control_write)) =
            pipes().map_err(|e| format!("cannot create the kernel's pipes: {e}"))?;
        let mut command = Command::new(program);
        command
            .args(lead)
            .arg("--control-fd")
            .arg(control_write.as_raw_fd().to_string())
            .arg("--cwd")
            .arg(&spec.cwd)
            .arg("--")
            .args(kernel_argv(spec.language))
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::from(out_write))
            .stderr(Stdio::from(err_write));
        let spawned = crate::spawn::spawn(&mut command, Some(control_write.as_fd()));
        // The runner has its copies; the agent's would keep the pipes from ending. It keeps
        // the control pipe's, to say on it how the kernel ended.
        drop(command);
        let mut runner = spawned.map_err(|e| format!("cannot start the runner: {e}"))?;
        let runner_pid = runner.id() as i32;
        let Some(requests) = runner.stdin.take() else {
            return Err("the runner has no request pipe".to_owned());
        };
        let waiter = std::thread::Builder::new().spawn(move || {
            let how = match runner.wait() {
                Ok(status) => match status.code() {
                    Some(code) if code > 128 => format!("signal {}", code - 128),
                    Some(code) => format!("exit code {code}"),
                    None => format!("its runner was killed ({status})"),
                },
                Err(e) => format!("its runner could not be waited for: {e}"),
            };
            report_end(control_write, &how);
            on_exit();
        });
        if let Err(e) = waiter {
            crate::runner::kill_tree(runner_pid);
            return Err(format!("cannot start a thread for the kernel: {e}"));
        }
        Ok(Kernel { requests, runner_pid, outputs: [out_read, err_read], control: control_read })
    }

    /// Wait until the kernel says it is ready; returns its pid (in the sandbox). The error
    /// quotes what it printed when it ended first.
    pub(super) fn wait_until_ready(&mut self, language: Language) -> Result<i32, String> {
        let language = language.as_str();
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut early_output = Vec::new();
        let mut control = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!(
                    "the {language} kernel was not ready within {} s",
                    READY_TIMEOUT.as_secs()
                ));
            }
            let timeout = PollTimeout::try_from(left.as_millis().max(1) as u64).unwrap_or(PollTimeout::MAX);
            let mut fds: Vec<PollFd> = self
                .outputs
                .iter()
                .chain([&self.control])
                .map(|f| PollFd::new(f.as_fd(), PollFlags::POLLIN))
                .collect();
            match nix::poll::poll(&mut fds, timeout) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => return Err(format!("cannot wait for the {language} kernel: {e}")),
            }
            for output in &mut self.outputs {
                let room = EARLY_OUTPUT_BYTES.saturating_sub(early_output.len());
                let mut buf = vec![0u8; room.max(1)];
                if let Ok(n) = output.read(&mut buf) {
                    early_output.extend_from_slice(&buf[..n.min(room)]);
                }
            }
            let mut buf = [0u8; 4096];
            let ended = match self.control.read(&mut buf) {
                Ok(0) => Some("its control pipe closed".to_owned()),
                Ok(n) => {
                    control.extend_from_slice(&buf[..n]);
                    None
                }
                Err(_) => None,
            };
            while let Some(end) = control.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = control.drain(..=end).collect();
                let message: serde_json::Value = serde_json::from_slice(&line).unwrap_or_default();
                match message["type"].as_str() {
                    Some("ready") => return Ok(message["pid"].as_i64().unwrap_or(0) as i32),
                    Some("exited") => {
                        let printed = String::from_utf8_lossy(&early_output);
                        return Err(format!(
                            "cannot start the {language} kernel: it ended before it was ready ({}): {}",
                            message["how"].as_str().unwrap_or("unknown"),
                            printed.trim()
                        ));
                    }
                    _ => {}
                }
            }
            if let Some(why) = ended {
                return Err(format!("cannot start the {language} kernel: {why} before it was ready"));
            }
        }
    }

    /// The pipes the runtime drives the kernel through: the request pipe's write end, then the
    /// read ends of control, stdout and stderr.
    pub(super) fn into_pipes(self) -> Vec<OwnedFd> {
        let [stdout, stderr] = self.outputs;
        vec![
            OwnedFd::from(self.requests),
            OwnedFd::from(self.control),
            OwnedFd::from(stdout),
            OwnedFd::from(stderr),
        ]
    }
}
