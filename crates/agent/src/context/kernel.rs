//! One running kernel: its runner, the pipes to and from it, and the wait for what it writes.
//!
//! The agent makes the kernel's stdout, stderr and control pipes itself and hands the write
//! ends down through the runner, so the kernel's output reaches the worker with no process or
//! thread in between. The runner stays the kernel's parent and subreaper: it ends everything the
//! kernel started when the kernel ends or is killed, and a waiter thread reports its exit.

use std::ffi::OsString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::process::{ChildStdin, Command, Stdio};
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{PollFd, PollFlags, PollTimeout};

use crate::protocol::{ContextStartRequest, Language, OutputStream};

/// Wakes a worker that waits in `poll` when something is queued for it.
pub(crate) struct Wake {
    read: File,
    write: File,
}

impl Wake {
    pub(crate) fn new() -> nix::Result<Wake> {
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
        Ok(Wake { read: File::from(read), write: File::from(write) })
    }

    /// Wake the worker. A full pipe means it is already woken.
    pub(crate) fn ring(&self) {
        let _ = (&self.write).write(&[1]);
    }

    fn drain(&self) {
        let mut buf = [0u8; 64];
        while matches!((&self.read).read(&mut buf), Ok(n) if n > 0) {}
    }
}

/// Something a kernel wrote.
pub(super) enum Written {
    /// Output of the run.
    Output(OutputStream, Vec<u8>),
    /// Bytes of control messages.
    Control(Vec<u8>),
}

/// A running kernel.
pub(super) struct Kernel {
    /// The request pipe; lent to the request loop while the kernel is idle (see `Feed`).
    pub(super) requests: Option<ChildStdin>,
    runner_pid: i32,
    /// The kernel's pid (it leads its process group), once its `ready` message gave it.
    pub(super) pid: i32,
    /// Read ends of stdout and stderr; `None` once ended.
    outputs: [Option<File>; 2],
    control: Option<File>,
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
    /// `airlock agent-run`). `on_exit` is called, on a thread of its own, with how the runner
    /// ended, once it has.
    pub(super) fn spawn(
        runner: &[OsString],
        spec: &ContextStartRequest,
        on_exit: impl FnOnce(String) + Send + 'static,
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
        // The runner has its copies; the worker's would keep the pipes from ending.
        drop(command);
        drop(control_write);
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
            on_exit(how);
        });
        if let Err(e) = waiter {
            crate::runner::kill_tree(runner_pid);
            return Err(format!("cannot start a thread for the kernel: {e}"));
        }
        Ok(Kernel {
            requests: Some(requests),
            runner_pid,
            pid: 0,
            outputs: [Some(out_read), Some(err_read)],
            control: Some(control_read),
        })
    }

    /// Hand the kernel a request.
    pub(super) fn send(&mut self, request: &[u8]) -> std::io::Result<()> {
        match &mut self.requests {
            Some(pipe) => pipe.write_all(request),
            None => Err(std::io::ErrorKind::BrokenPipe.into()),
        }
    }

    /// Kill the kernel and all it started; the runner then exits, and its waiter reports it.
    pub(super) fn kill(self) {
        crate::runner::kill_tree(self.runner_pid);
    }
}

/// Wait up to `timeout` (for ever with `None`) until the kernel writes or `wake` rings, and
/// return what the kernel wrote. When a control message is readable, every byte of output
/// waiting in the pipes comes before it: the kernel flushes its output before it writes a
/// control message, so the run's output is all there by then.
pub(super) fn wait(kernel: Option<&mut Kernel>, wake: &Wake, timeout: Option<Duration>) -> Vec<Written> {
    let mut written = Vec::new();
    let timeout = match timeout {
        // Rounded up to whole milliseconds, so that the wait does not end just before it.
        Some(t) => PollTimeout::try_from(Duration::from_millis(t.as_micros().div_ceil(1000) as u64))
            .unwrap_or(PollTimeout::MAX),
        None => PollTimeout::NONE,
    };
    let Some(kernel) = kernel else {
        let mut fds = [PollFd::new(wake.read.as_fd(), PollFlags::POLLIN)];
        let _ = nix::poll::poll(&mut fds, timeout);
        wake.drain();
        return written;
    };
    let ready = {
        let mut fds = vec![PollFd::new(wake.read.as_fd(), PollFlags::POLLIN)];
        let sources: Vec<Option<&File>> =
            kernel.outputs.iter().chain([&kernel.control]).map(Option::as_ref).collect();
        fds.extend(sources.iter().flatten().map(|f| PollFd::new(f.as_fd(), PollFlags::POLLIN)));
        match nix::poll::poll(&mut fds, timeout) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(_) => return written,
        }
        let mut revents = fds.iter().map(|fd| fd.revents().is_some_and(|r| !r.is_empty()));
        let woken = revents.next().unwrap_or(false);
        let ready: Vec<bool> =
            sources.iter().map(|s| s.is_some() && revents.next().unwrap_or(false)).collect();
        if woken {
            wake.drain();
        }
        ready
    };
    let control_ready = ready[2];
    for (slot, stream) in [(0, OutputStream::Stdout), (1, OutputStream::Stderr)] {
        if ready[slot] || control_ready {
            // Everything waiting when a control message is, else one read.
            read_into(&mut kernel.outputs[slot], control_ready, |bytes| {
                written.push(Written::Output(stream, bytes))
            });
        }
    }
    if control_ready {
        read_into(&mut kernel.control, false, |bytes| written.push(Written::Control(bytes)));
    }
    written
}

/// Read from `source` once, or until nothing is waiting with `all`; forget it at its end.
fn read_into(source: &mut Option<File>, all: bool, mut take: impl FnMut(Vec<u8>)) {
    let Some(file) = source else { return };
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match file.read(&mut buf) {
            Ok(0) => {
                *source = None;
                return;
            }
            Ok(n) => take(buf[..n].to_vec()),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
            Err(_) => {
                *source = None;
                return;
            }
        }
        if !all {
            return;
        }
    }
}

/// CPU time of `pid` and of the children it waited for, in clock ticks.
pub(super) fn cpu_ticks(pid: i32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0 };
    // After `pid (comm) `: state is field 0, utime 11, stime 12, cutime 13, cstime 14.
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else { return 0 };
    rest.split_whitespace().skip(11).take(4).filter_map(|t| t.parse::<u64>().ok()).sum()
}

pub(super) fn ticks_per_second() -> u64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(ticks)) if ticks > 0 => ticks as u64,
        _ => 100,
    }
}

/// Peak resident memory of `pid` (`VmHWM`), in bytes.
pub(super) fn peak_rss(pid: i32) -> u64 {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else { return 0 };
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}
