//! The agent's request loop: requests arrive on standard input (a socket to the runtime), and
//! every answer goes back on the same socket, one line each. Each command runs on a thread of its
//! own through a runner process, so a slow command never holds up a ping or another command, and
//! each file operation runs on a thread of its own for the same reason.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, IoSlice, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use nix::sys::signal::{kill, SigSet, Signal};
use nix::unistd::Pid;

use crate::context::{self, Contexts};
use crate::files::{self, WriteOptions};
use crate::protocol::{Event, Op, Request, Response};

/// The answering half of the control socket, shared by every thread.
#[derive(Clone)]
pub(crate) struct Replies(Arc<Mutex<std::fs::File>>);

impl Replies {
    /// Send one answer as one line. A runtime that hung up gets nothing; the request loop then
    /// ends on its own.
    pub(crate) fn send(&self, id: u64, event: Event) {
        let mut line = serde_json::to_vec(&Response { id, event }).unwrap_or_default();
        line.push(b'\n');
        let mut out = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let _ = out.write_all(&line);
    }

    /// Send one answer with descriptors attached to its first byte: the runtime's read that
    /// returns that byte also receives them, so it pairs the two in order.
    pub(crate) fn send_with_fds(&self, id: u64, event: Event, fds: Vec<OwnedFd>) {
        use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags, UnixAddr};
        let mut line = serde_json::to_vec(&Response { id, event }).unwrap_or_default();
        line.push(b'\n');
        let mut out = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let raw: Vec<i32> = fds.iter().map(AsRawFd::as_raw_fd).collect();
        let sent = sendmsg::<UnixAddr>(
            out.as_raw_fd(),
            &[IoSlice::new(&line)],
            &[ControlMessage::ScmRights(&raw)],
            MsgFlags::empty(),
            None,
        );
        if let Ok(n) = sent {
            let _ = out.write_all(&line[n..]);
        }
    }
}

/// What the agent keeps of a running command, to reach it from later requests.
pub(crate) struct Running {
    /// The runner's pid, once started: every process of the command descends from it.
    pub(crate) runner_pid: Option<i32>,
    /// The command's main process, once the runner reported it.
    pub(crate) main_pid: Option<i32>,
    /// Feeds the command's standard input; dropped to close it.
    pub(crate) stdin: Option<mpsc::Sender<Vec<u8>>>,
    /// Set by a kill request, so the exit says `killed`.
    pub(crate) killed: Arc<AtomicBool>,
}

/// Running commands by the id of their `start` request.
pub(crate) type Table = Arc<Mutex<HashMap<u64, Running>>>;

/// Serve requests on standard input until the runtime closes it. `runner` is the program and
/// leading arguments that start a runner (the airlock binary and its hidden `agent-run`
/// subcommand).
pub fn serve(runner: Vec<OsString>) -> std::io::Result<()> {
    // Processes of the sandbox run as the agent's uid; not dumpable, they cannot open its
    // descriptors (the control socket) through /proc.
    nix::sys::prctl::set_dumpable(false).map_err(std::io::Error::from)?;
    // A write beyond the sandbox's file size limit (RLIMIT_FSIZE) raises SIGXFSZ, whose default
    // action would end the agent and the sandbox with it. Blocked before any thread starts, so
    // that every thread inherits the mask, it leaves the write failing with EFBIG instead.
    // Runners start with an empty mask (std's `Command` resets it), so commands still get it.
    SigSet::from(Signal::SIGXFSZ).thread_block().map_err(std::io::Error::from)?;
    let control = std::fs::File::from(std::io::stdin().as_fd().try_clone_to_owned()?);
    let replies = Replies(Arc::new(Mutex::new(control.try_clone()?)));
    let table: Table = Arc::default();
    let contexts: Contexts = Arc::default();
    let runner = Arc::new(runner);
    for line in BufReader::new(control).lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let request: Request = match serde_json::from_str(&line) {
            Ok(r) => r,
            Err(e) => {
                let id = serde_json::from_str::<serde_json::Value>(&line)
                    .ok()
                    .and_then(|v| v.get("id").and_then(serde_json::Value::as_u64))
                    .unwrap_or(0);
                replies.send(id, Event::Error { message: format!("bad request: {e}") });
                continue;
            }
        };
        let id = request.id;
        match request.op {
            Op::Ping => replies.send(id, Event::Pong),
            Op::ListenLoopback { port } => match crate::loopback::listen(port) {
                Ok(listener) => replies.send_with_fds(id, Event::Socket, vec![listener]),
                Err(message) => replies.send(id, Event::Error { message }),
            },
            Op::ConnectLoopback { port } => {
                let answer = replies.clone();
                // A connect to a full backlog waits; the request loop must not.
                let started =
                    std::thread::Builder::new().spawn(move || match crate::loopback::connect(port) {
                        Ok(stream) => answer.send_with_fds(id, Event::Socket, vec![stream]),
                        Err(message) => answer.send(id, Event::Error { message }),
                    });
                if started.is_err() {
                    replies.send(id, Event::Error { message: "no thread for the connection".to_owned() });
                }
            }
            Op::Start(start) => crate::command::start(id, start, Arc::clone(&runner), &table, &replies),
            Op::Stdin { command, data } => {
                let sent = with_command(&table, command, |c| match &c.stdin {
                    Some(tx) => {
                        tx.send(data.into_bytes()).map_err(|_| "its standard input is closed".to_owned())
                    }
                    None => Err("its standard input is closed".to_owned()),
                });
                replies.send(id, done_or_error(sent));
            }
            Op::CloseStdin { command } => {
                let closed = with_command(&table, command, |c| {
                    c.stdin = None;
                    Ok(())
                });
                replies.send(id, done_or_error(closed));
            }
            Op::Signal { command, signal } => {
                let sent = Signal::try_from(signal)
                    .map_err(|_| format!("{signal} is not a signal number"))
                    .and_then(|sig| {
                        with_command(&table, command, |c| match c.main_pid {
                            Some(pid) => kill(Pid::from_raw(pid), sig).map_err(|e| e.to_string()),
                            None => Err("it has not started yet".to_owned()),
                        })
                    });
                replies.send(id, done_or_error(sent));
            }
            Op::Kill { command } => {
                let runner_pid = with_command(&table, command, |c| {
                    c.killed.store(true, Ordering::SeqCst);
                    Ok(c.runner_pid)
                });
                match runner_pid {
                    Ok(Some(pid)) => {
                        let answer = replies.clone();
                        // Killing a fork bomb takes rounds; the request loop goes on meanwhile,
                        // unless no thread can start (the process limit): then it waits.
                        let started = std::thread::Builder::new().spawn(move || {
                            crate::runner::kill_tree(pid);
                            answer.send(id, Event::Done);
                        });
                        if started.is_err() {
                            crate::runner::kill_tree(pid);
                            replies.send(id, Event::Done);
                        }
                    }
                    // The command's thread sees the flag once its runner exists.
                    Ok(None) => replies.send(id, Event::Done),
                    Err(message) => replies.send(id, Event::Error { message }),
                }
            }
            Op::ContextStart(spec) => context::start(id, spec, Arc::clone(&runner), &contexts, &replies),
            Op::Interrupt { context: name } => {
                let interrupted = context::interrupt(&contexts, &name);
                replies.send(id, done_or_error(interrupted));
            }
            Op::ContextStop { context: name } => {
                if let Err(message) = context::stop(&contexts, &name, id, &replies) {
                    replies.send(id, Event::Error { message });
                }
            }
            Op::ReadFile { path, offset, length } => {
                files::spawn(id, &replies, move || files::read(&path, offset, length))
            }
            Op::WriteFile { path, data, offset, append, create_parents, mode } => {
                files::spawn(id, &replies, move || {
                    files::write(&path, &data, WriteOptions { offset, append, create_parents, mode })
                })
            }
            Op::Stat { path } => files::spawn(id, &replies, move || files::stat(&path)),
            Op::List { path, depth } => files::spawn(id, &replies, move || files::list(&path, depth)),
            Op::Mkdir { path, parents, mode } => {
                files::spawn(id, &replies, move || files::mkdir(&path, parents, mode))
            }
            Op::Move { from, to, overwrite } => {
                files::spawn(id, &replies, move || files::rename(&from, &to, overwrite))
            }
            Op::Remove { path, recursive } => {
                files::spawn(id, &replies, move || files::remove(&path, recursive))
            }
        }
    }
    Ok(())
}

fn with_command<T>(
    table: &Table,
    command: u64,
    f: impl FnOnce(&mut Running) -> Result<T, String>,
) -> Result<T, String> {
    let mut table = table.lock().unwrap_or_else(|e| e.into_inner());
    match table.get_mut(&command) {
        Some(running) => f(running),
        None => Err(format!("no running command {command}")),
    }
}

fn done_or_error(result: Result<(), String>) -> Event {
    match result {
        Ok(()) => Event::Done,
        Err(message) => Event::Error { message },
    }
}
