//! The runner: one per command, between the agent and the command. It is a child subreaper
//! (`PR_SET_CHILD_SUBREAPER`), so everything the command starts stays its descendant even after
//! `setsid` and a double fork; when the command ends or its timeout fires, the runner kills
//! exactly those processes and nothing else in the sandbox.
//!
//! Its standard output is a stream of frames for the agent: a tag byte ([`Frame`]), a 4-byte
//! little-endian length, then the bytes. The command's own standard input is the runner's. A
//! code context's kernel runs differently (see [`RunnerOptions::control_fd`]).

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::resource::{getrusage, UsageWho};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

/// Names the descriptor a kernel reads its requests from (see [`RunnerOptions::control_fd`]).
pub const REQUEST_FD_ENV: &str = "AIRLOCK_REQUEST_FD";
/// Names the descriptor a kernel writes its control messages to.
pub const CONTROL_FD_ENV: &str = "AIRLOCK_CONTROL_FD";

/// How the runner runs its command.
#[derive(Debug, Clone, Default)]
pub struct RunnerOptions {
    /// Working directory of the command.
    pub cwd: PathBuf,
    /// Kill the command's whole tree after this long.
    pub timeout: Option<Duration>,
    /// Run the command as a code context's kernel, with this inherited descriptor (the write
    /// end of the agent's control pipe) named to it by [`CONTROL_FD_ENV`]. No frames then: the
    /// kernel writes straight to the runner's stdout and stderr (the agent's pipes), reads its
    /// requests from a copy of the runner's stdin named by [`REQUEST_FD_ENV`] while its own
    /// stdin is `/dev/null`, and leads a process group of its own, so that an interrupt reaches
    /// its foreground children too. The runner exits with the kernel's status.
    pub control_fd: Option<i32>,
}

/// Kinds of frame on the runner's standard output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Frame {
    /// Bytes the command wrote to its stdout.
    Stdout = 1,
    /// Bytes the command wrote to its stderr.
    Stderr = 2,
    /// The last frame: a JSON [`RunnerExit`].
    Exit = 3,
    /// The first frame: the command's pid, as decimal text.
    Started = 4,
}

impl Frame {
    /// The frame kind of a tag byte.
    pub fn from_tag(tag: u8) -> Option<Frame> {
        match tag {
            1 => Some(Frame::Stdout),
            2 => Some(Frame::Stderr),
            3 => Some(Frame::Exit),
            4 => Some(Frame::Started),
            _ => None,
        }
    }
}

/// How the command ended, as the runner saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunnerExit {
    /// Exit code, when it exited.
    pub exit_code: Option<i32>,
    /// Signal number, when it was killed.
    pub signal: Option<i32>,
    /// Whether the timeout ended it.
    pub timed_out: bool,
    /// Why it could not be started.
    pub spawn_error: Option<String>,
    /// User CPU time of every process it reaped, in milliseconds.
    #[serde(default)]
    pub user_cpu_ms: u64,
    /// System CPU time of every process it reaped, in milliseconds.
    #[serde(default)]
    pub system_cpu_ms: u64,
    /// Peak resident memory of the largest process it reaped, in bytes.
    #[serde(default)]
    pub max_rss_bytes: u64,
}

/// Run `argv` as `options` say, writing frames to stdout. Returns the runner's exit status (0 once
/// the exit frame is written).
pub fn main(argv: &[String], options: &RunnerOptions) -> i32 {
    if let Some(control_fd) = options.control_fd {
        return run_kernel(argv, options, control_fd);
    }
    let out = Arc::new(Mutex::new(std::io::stdout()));
    let exit = run(argv, options, &out);
    let body = serde_json::to_vec(&exit).unwrap_or_default();
    match write_frame(&out, Frame::Exit, &body) {
        Ok(()) => 0,
        Err(_) => 1,
    }
}

fn run(argv: &[String], options: &RunnerOptions, out: &Arc<Mutex<std::io::Stdout>>) -> RunnerExit {
    let failed = |message: String| RunnerExit {
        exit_code: Some(127),
        spawn_error: Some(message),
        ..RunnerExit::default()
    };
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        return failed(format!("cannot become the command's subreaper: {e}"));
    }
    let Some((program, args)) = argv.split_first() else {
        return failed("empty command".to_owned());
    };
    // Every thread is started before the command exists: a fork bomb can use up the sandbox's
    // process limit (threads count) at once, and a runner that cannot start its threads then
    // would have to give up on a tree it no longer controls.
    let pipe = || nix::unistd::pipe2(OFlag::O_CLOEXEC);
    let (Ok((out_read, out_write)), Ok((err_read, err_write))) = (pipe(), pipe()) else {
        return failed("cannot create the command's output pipes".to_owned());
    };
    let sources = vec![(Frame::Stdout, out_read), (Frame::Stderr, err_read)];
    let mut command = Command::new(program);
    command
        .args(args)
        .current_dir(&options.cwd)
        .stdin(Stdio::inherit())
        .stdout(Stdio::from(out_write))
        .stderr(Stdio::from(err_write));
    let pump = {
        let out = Arc::clone(out);
        match std::thread::Builder::new().spawn(move || pump(sources, &out)) {
            Ok(pump) => pump,
            Err(e) => return failed(format!("cannot start a thread: {e}")),
        }
    };
    // The timer kills the tree at the deadline; this thread reaps (the main child and every
    // orphan that lands here) until the main child has ended.
    let (finished, finished_rx) = mpsc::channel::<()>();
    let timer = match options.timeout {
        None => None,
        Some(limit) => {
            let timer = std::thread::Builder::new().spawn(move || match finished_rx.recv_timeout(limit) {
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    kill_tree(nix::unistd::getpid().as_raw());
                    true
                }
                _ => false,
            });
            match timer {
                Ok(timer) => Some(timer),
                Err(e) => return failed(format!("cannot start a thread: {e}")),
            }
        }
    };
    let spawned = command.spawn();
    // The command has its copies of the output pipes now; the runner's would keep them open.
    drop(command);
    let child = match spawned {
        Ok(child) => child,
        Err(e) => {
            let mut exit = failed(format!("cannot start {program:?}: {e}"));
            if e.kind() == std::io::ErrorKind::PermissionDenied {
                exit.exit_code = Some(126);
            }
            return exit;
        }
    };
    let main = Pid::from_raw(child.id() as i32);
    let _ = write_frame(out, Frame::Started, main.as_raw().to_string().as_bytes());
    let status = loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::__WALL)) {
            Ok(WaitStatus::Exited(pid, code)) if pid == main => break Ok((Some(code), None)),
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid == main => break Ok((None, Some(sig as i32))),
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => break Err(e),
        }
    };
    drop(finished);
    let timed_out = timer.is_some_and(|t| t.join().unwrap_or(false));
    // Whatever the command left behind (background jobs, daemons) belongs to it: end it too, so
    // that the output pipes close and nothing of this command outlives it.
    kill_tree(nix::unistd::getpid().as_raw());
    while !matches!(waitpid(Pid::from_raw(-1), Some(WaitPidFlag::__WALL)), Err(Errno::ECHILD)) {}
    let _ = pump.join();
    let mut exit = match status {
        Ok((exit_code, signal)) => RunnerExit { exit_code, signal, timed_out, ..RunnerExit::default() },
        Err(e) => {
            RunnerExit { timed_out, spawn_error: Some(format!("wait failed: {e}")), ..RunnerExit::default() }
        }
    };
    // Every process of the command has been reaped by now, so this covers the whole tree.
    if let Ok(usage) = getrusage(UsageWho::RUSAGE_CHILDREN) {
        let millis = |t: nix::sys::time::TimeVal| (t.tv_sec() * 1000 + t.tv_usec() / 1000).max(0) as u64;
        exit.user_cpu_ms = millis(usage.user_time());
        exit.system_cpu_ms = millis(usage.system_time());
        exit.max_rss_bytes = (usage.max_rss().max(0) as u64) * 1024;
    }
    exit
}

/// Pass what the command writes on as frames until both outputs have ended. One thread polls
/// both, reading once from each ready one per round, so neither starves the other.
fn pump(sources: Vec<(Frame, OwnedFd)>, out: &Mutex<std::io::Stdout>) {
    let mut open: Vec<(Frame, std::fs::File)> =
        sources.into_iter().map(|(frame, fd)| (frame, std::fs::File::from(fd))).collect();
    let mut buf = vec![0u8; 64 * 1024];
    while !open.is_empty() {
        let ready: Vec<bool> = {
            let mut fds: Vec<PollFd> =
                open.iter().map(|(_, file)| PollFd::new(file.as_fd(), PollFlags::POLLIN)).collect();
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(_) => return,
            }
            fds.iter().map(|fd| fd.revents().is_some_and(|r| !r.is_empty())).collect()
        };
        let mut ended = Vec::new();
        for (i, (frame, file)) in open.iter_mut().enumerate().filter(|(i, _)| ready[*i]) {
            match file.read(&mut buf) {
                Ok(0) | Err(_) => ended.push(i),
                Ok(n) => {
                    if write_frame(out, *frame, &buf[..n]).is_err() {
                        return;
                    }
                }
            }
        }
        for i in ended.into_iter().rev() {
            open.remove(i);
        }
    }
}

/// Run a code context's kernel (see [`RunnerOptions::control_fd`]) until it ends, then end
/// whatever it left; returns its exit status, or 128 + the signal that killed it.
fn run_kernel(argv: &[String], options: &RunnerOptions, control_fd: i32) -> i32 {
    // The runner's stderr is the kernel's: the agent shows what is written there when the kernel
    // does not start.
    let fail = |message: String| {
        eprintln!("airlock agent-run: {message}");
        127
    };
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        return fail(format!("cannot become the kernel's subreaper: {e}"));
    }
    let Some((program, args)) = argv.split_first() else {
        return fail("empty command".to_owned());
    };
    // A copy of stdin without close-on-exec: the kernel reads its requests there.
    let request = match std::io::stdin().as_fd().try_clone_to_owned() {
        Ok(fd) => fd,
        Err(e) => return fail(format!("cannot copy the request pipe: {e}")),
    };
    if let Err(e) = fcntl(request.as_raw_fd(), FcntlArg::F_SETFD(FdFlag::empty())) {
        return fail(format!("cannot pass the request pipe on: {e}"));
    }
    let spawned = Command::new(program)
        .args(args)
        .current_dir(&options.cwd)
        .stdin(Stdio::null())
        .process_group(0)
        .env(REQUEST_FD_ENV, request.as_raw_fd().to_string())
        .env(CONTROL_FD_ENV, control_fd.to_string())
        .spawn();
    // The kernel has its copies; the runner keeps none.
    drop(request);
    let _ = nix::unistd::close(control_fd);
    let child = match spawned {
        Ok(child) => child,
        Err(e) => return fail(format!("cannot start {program:?}: {e}")),
    };
    let main = Pid::from_raw(child.id() as i32);
    let status = loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::__WALL)) {
            Ok(WaitStatus::Exited(pid, code)) if pid == main => break code,
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid == main => break 128 + sig as i32,
            Ok(_) | Err(Errno::EINTR) => {}
            Err(_) => break 127,
        }
    };
    kill_tree(nix::unistd::getpid().as_raw());
    while !matches!(waitpid(Pid::from_raw(-1), Some(WaitPidFlag::__WALL)), Err(Errno::ECHILD)) {}
    status
}

fn write_frame(out: &Mutex<std::io::Stdout>, frame: Frame, body: &[u8]) -> std::io::Result<()> {
    let mut out = out.lock().unwrap_or_else(|e| e.into_inner());
    let mut header = [0u8; 5];
    header[0] = frame as u8;
    header[1..].copy_from_slice(&(body.len() as u32).to_le_bytes());
    // One write per frame: a system call less on every chunk of output.
    let mut frame_bytes = Vec::with_capacity(header.len() + body.len());
    frame_bytes.extend_from_slice(&header);
    frame_bytes.extend_from_slice(body);
    out.write_all(&frame_bytes)?;
    out.flush()
}

/// SIGKILL every descendant of `root` (a runner), over and over, until none is left alive (the
/// dead are reaped by the runner's wait loop). Orphans of the command are re-parented to the
/// runner (their subreaper), so the tree is found by parent links in `/proc` whatever sessions
/// or groups they made.
pub(crate) fn kill_tree(root: i32) {
    loop {
        let tree = descendants(root);
        if tree.is_empty() {
            return;
        }
        for pid in &tree {
            let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// SIGKILL every process of the sandbox that neither is the agent nor descends from it: the
/// leftovers of a runner that was killed (by the OOM killer, say) before it could end its
/// command's tree. Its orphans are re-parented to the sandbox's init, where no legitimate process
/// but the agent lives.
pub(crate) fn kill_strays() {
    let agent = nix::unistd::getpid().as_raw();
    loop {
        let ours = descendants(agent);
        let strays: Vec<i32> =
            descendants(1).into_iter().filter(|pid| *pid != agent && !ours.contains(pid)).collect();
        if strays.is_empty() {
            return;
        }
        for pid in &strays {
            let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Pids whose chain of parents reaches `root`, zombies excluded.
fn descendants(root: i32) -> Vec<i32> {
    let mut parent_of = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // `pid (comm) state ppid ...`: comm may hold spaces and parentheses; the last ')' ends it.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else { continue };
        let mut fields = rest.split_whitespace();
        let state = fields.next().unwrap_or("");
        let Some(ppid) = fields.next().and_then(|p| p.parse::<i32>().ok()) else { continue };
        if state != "Z" && state != "X" {
            parent_of.push((pid, ppid));
        }
    }
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(parent_of.iter().filter(|(_, pp)| *pp == parent).map(|(p, _)| *p));
        i += 1;
    }
    found.remove(0);
    found
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[test]
    fn frames_round_trip_their_tags() {
        for f in [Frame::Stdout, Frame::Stderr, Frame::Exit, Frame::Started] {
            assert_eq!(Frame::from_tag(f as u8), Some(f));
        }
        assert_eq!(Frame::from_tag(9), None);
    }

    #[test]
    fn descendants_follow_parent_links() {
        let mut child = Command::new("sh").args(["-c", "sleep 30 & wait"]).spawn().unwrap();
        let me = std::process::id() as i32;
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut tree = descendants(me);
        while tree.len() < 2 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
            tree = descendants(me);
        }
        assert!(tree.contains(&(child.id() as i32)), "{tree:?}");
        assert!(tree.len() >= 2, "sh and its sleep: {tree:?}");
        for pid in &tree {
            let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
        }
        let _ = child.wait();
    }
}
