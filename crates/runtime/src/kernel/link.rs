//! One kernel's pipes, held by the runtime, and the runs through them.

use std::io::ErrorKind;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use airlock_agent::protocol::{CodeMode, Language, Op};
use airlock_agent::utf8::Utf8Chunks;
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::unix::pipe;
use tokio::sync::mpsc;

use super::control::ControlLines;
use super::{request_line, usage, CodeEnd, RunCodeRequest, RunStatus};
use crate::agent_conn::AgentConn;
use crate::code::CodeEvent;

/// How long a run may go on after its interrupt before its kernel is restarted.
const INTERRUPT_GRACE: Duration = Duration::from_secs(2);

/// Size of the buffer a kernel's output is read into.
const READ_BYTES: usize = 64 << 10;

/// What the rest of the runtime tells the run going on in a context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RunSignal {
    /// Interrupt it, as its timeout would.
    Interrupt,
    /// Its kernel is being stopped (the context is deleted or restarted): end it now.
    Stopped,
}

/// What is to become of the kernel after a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fate {
    /// It is idle and keeps its state.
    Idle,
    /// It is gone or must go: a fresh one is to be started, for this reason.
    Restart(String),
    /// It was stopped by whoever signalled [`RunSignal::Stopped`].
    Stopped,
    /// A script ran in it, which may have changed anything: it is to be killed.
    Retire,
}

/// A context's kernel as the runtime drives it.
pub(crate) struct KernelLink {
    language: Language,
    requests: pipe::Sender,
    control: pipe::Receiver,
    /// Stdout and stderr; `None` once ended.
    outputs: [Option<pipe::Receiver>; 2],
    /// The kernel's pid on the host, when found, for what runs used.
    host_pid: Option<i32>,
    /// Its CPU time when the previous run ended.
    cpu_mark: u64,
    lines: ControlLines,
    /// Runs so far.
    count: u64,
    buf: Vec<u8>,
}

/// What a run has seen so far.
struct RunState {
    started: Instant,
    deadline: Option<Instant>,
    /// Set once the run was interrupted, by its timeout or a request.
    interrupted: Option<(RunStatus, Instant)>,
    error_seen: bool,
    passed: u64,
    end: CodeEnd,
    decoders: [Utf8Chunks; 2],
    script: bool,
    /// How the kernel ended, once the agent said so.
    exited: Option<String>,
}

/// What woke a run.
enum Woke {
    Control,
    Output(usize),
    Signal(Option<RunSignal>),
    Time,
}

impl KernelLink {
    /// Take over the pipes the agent handed over with a kernel's `context_ready`: the request
    /// pipe's write end, then the read ends of control, stdout and stderr. `launcher` is the
    /// sandbox's launcher pid, under which the kernel (`pid` in the sandbox) is looked up.
    pub(crate) fn new(
        language: Language,
        pipes: Vec<OwnedFd>,
        launcher: Option<u32>,
        pid: i32,
    ) -> std::io::Result<KernelLink> {
        let [requests, control, stdout, stderr]: [OwnedFd; 4] = pipes
            .try_into()
            .map_err(|_| std::io::Error::other("the agent handed over the wrong number of pipes"))?;
        let host_pid = launcher.and_then(|root| usage::host_pid(root, pid));
        Ok(KernelLink {
            language,
            requests: pipe::Sender::from_owned_fd(requests)?,
            control: pipe::Receiver::from_owned_fd(control)?,
            outputs: [
                Some(pipe::Receiver::from_owned_fd(stdout)?),
                Some(pipe::Receiver::from_owned_fd(stderr)?),
            ],
            host_pid,
            cpu_mark: host_pid.map_or(0, usage::cpu_ticks),
            lines: ControlLines::default(),
            count: 0,
            buf: vec![0; READ_BYTES],
        })
    }

    /// Whether the kernel is still there. Output it wrote between runs belongs to no run and is
    /// dropped here.
    pub(crate) fn alive(&mut self) -> bool {
        for slot in 0..2 {
            while self.read_output(slot).is_some_and(|n| n > 0) {}
        }
        loop {
            match self.control.try_read(&mut self.buf) {
                Ok(0) => return false,
                // Control bytes come only during runs; these belong to none.
                Ok(_) => continue,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return e.kind() == ErrorKind::WouldBlock,
            }
        }
    }

    /// Run `request`, passing its output and results to `events` as they come; `signals`
    /// brings interrupts and stops, and `conn` sends the kernel's interrupts. Returns the end
    /// (with its `execution_count`) and what is to become of the kernel.
    pub(crate) async fn run(
        &mut self,
        conn: &AgentConn,
        request: &RunCodeRequest,
        events: &mpsc::UnboundedSender<CodeEvent>,
        signals: &mut mpsc::UnboundedReceiver<RunSignal>,
    ) -> (CodeEnd, Fate) {
        let started = Instant::now();
        self.count += 1;
        let mut state = RunState {
            started,
            deadline: request.timeout_ms.map(|ms| started + Duration::from_millis(ms)),
            interrupted: None,
            error_seen: false,
            passed: 0,
            end: CodeEnd { execution_count: self.count, ..CodeEnd::default() },
            decoders: Default::default(),
            script: request.mode == CodeMode::Script,
            exited: None,
        };
        let line = request_line(self.language, request, self.count);
        if self.requests.write_all(&line).await.is_err() {
            return self.lost(state, request, events, "the kernel does not read its requests");
        }
        loop {
            let wake_at = match state.interrupted {
                Some((_, at)) => Some(at + INTERRUPT_GRACE),
                None => state.deadline,
            };
            let woke = tokio::select! {
                biased;
                _ = self.control.readable() => Woke::Control,
                _ = readable(&self.outputs[0]) => Woke::Output(0),
                _ = readable(&self.outputs[1]) => Woke::Output(1),
                signal = signals.recv() => Woke::Signal(signal),
                _ = sleep_until(wake_at) => Woke::Time,
            };
            match woke {
                Woke::Control => {
                    // The kernel flushed the run's output before this message: pass it on first.
                    self.drain_outputs(&mut state, request, events);
                    let messages = match self.control.try_read(&mut self.buf) {
                        Ok(0) => {
                            let why = match &state.exited {
                                Some(how) => format!("the kernel ended during the run ({how})"),
                                None => "the kernel ended during the run".to_owned(),
                            };
                            return self.lost(state, request, events, &why);
                        }
                        Ok(n) => self.lines.push(&self.buf[..n]),
                        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {
                            continue
                        }
                        Err(_) => {
                            return self.lost(state, request, events, "the kernel's control pipe failed")
                        }
                    };
                    for message in messages {
                        if control_message(&mut state, &message, events) {
                            let end = self.finish(state, true, events);
                            let fate =
                                if request.mode == CodeMode::Script { Fate::Retire } else { Fate::Idle };
                            return (end, fate);
                        }
                    }
                }
                Woke::Output(slot) => {
                    if let Some(n) = self.read_output(slot) {
                        let bytes = self.buf[..n].to_vec();
                        pass_output(&mut state, request, slot, &bytes, events);
                    }
                }
                Woke::Signal(Some(RunSignal::Interrupt)) => {
                    interrupt(conn, request, &mut state, RunStatus::Interrupted).await
                }
                Woke::Signal(Some(RunSignal::Stopped) | None) => {
                    state.end.status = RunStatus::ContextLost;
                    state.end.message = Some("the context was stopped".to_owned());
                    return (self.finish(state, false, events), Fate::Stopped);
                }
                Woke::Time if state.script => {
                    // A program has no state worth an interrupt: its timeout kills it.
                    state.end.status = RunStatus::Timeout;
                    state.end.message = Some("its timeout killed it".to_owned());
                    return (self.finish(state, false, events), Fate::Retire);
                }
                Woke::Time => match state.interrupted {
                    None => interrupt(conn, request, &mut state, RunStatus::Timeout).await,
                    Some((status, _)) => {
                        state.end.status = status;
                        let why = format!(
                            "the code did not stop within {} s of its interrupt: the context was restarted",
                            INTERRUPT_GRACE.as_secs()
                        );
                        return (self.finish(state, false, events), Fate::Restart(why));
                    }
                },
            }
        }
    }

    /// Read from output `slot` once: the count read (0 at its end, which forgets it), or
    /// `None` when nothing was waiting.
    fn read_output(&mut self, slot: usize) -> Option<usize> {
        let pipe = self.outputs[slot].as_ref()?;
        match pipe.try_read(&mut self.buf) {
            Ok(0) => {
                self.outputs[slot] = None;
                Some(0)
            }
            Ok(n) => Some(n),
            Err(e) if e.kind() == ErrorKind::WouldBlock => None,
            Err(e) if e.kind() == ErrorKind::Interrupted => None,
            Err(_) => {
                self.outputs[slot] = None;
                Some(0)
            }
        }
    }

    /// Pass on everything waiting in the output pipes.
    fn drain_outputs(&mut self, state: &mut RunState, request: &RunCodeRequest, events: &Sender) {
        for slot in 0..2 {
            while let Some(n) = self.read_output(slot).filter(|&n| n > 0) {
                let bytes = self.buf[..n].to_vec();
                pass_output(state, request, slot, &bytes, events);
            }
        }
    }

    /// The kernel is gone during the run: pass on what it wrote, and end the run for a restart.
    fn lost(
        &mut self,
        mut state: RunState,
        request: &RunCodeRequest,
        events: &Sender,
        why: &str,
    ) -> (CodeEnd, Fate) {
        self.drain_outputs(&mut state, request, events);
        state.end.status = RunStatus::ContextLost;
        (self.finish(state, false, events), Fate::Restart(why.to_owned()))
    }

    /// Pass on what is left of the output and end the run; `measured` adds what the kernel
    /// used (it is alive and idle).
    fn finish(&mut self, mut state: RunState, measured: bool, events: &Sender) -> CodeEnd {
        if !state.end.output_truncated {
            for slot in 0..2 {
                let data = state.decoders[slot].finish();
                if !data.is_empty() {
                    let _ = events.send(output_event(slot, data));
                }
            }
        }
        state.end.duration_ms = state.started.elapsed().as_millis() as u64;
        if let Some(pid) = self.host_pid.filter(|_| measured) {
            let cpu = usage::cpu_ticks(pid);
            state.end.cpu_ms = usage::ticks_to_ms(cpu.saturating_sub(self.cpu_mark));
            self.cpu_mark = cpu;
            state.end.max_rss_bytes = usage::peak_rss(pid);
        }
        state.end
    }
}

type Sender = mpsc::UnboundedSender<CodeEvent>;

/// Wait until `pipe` is readable; for ever once it has ended.
async fn readable(pipe: &Option<pipe::Receiver>) {
    match pipe {
        Some(pipe) => {
            let _ = pipe.readable().await;
        }
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Interrupt the run, once: the agent sends SIGINT to the kernel's process group.
async fn interrupt(conn: &AgentConn, request: &RunCodeRequest, state: &mut RunState, why: RunStatus) {
    if state.interrupted.is_some() {
        return;
    }
    state.interrupted = Some((why, Instant::now()));
    // An agent that cannot be reached leaves the run to its grace period and restart.
    let _ = conn.call(Op::Interrupt { context: request.context.clone() }).await;
}

fn output_event(slot: usize, data: String) -> CodeEvent {
    if slot == 0 {
        CodeEvent::Stdout(data)
    } else {
        CodeEvent::Stderr(data)
    }
}

/// Count output and pass on what fits in the run's cap.
fn pass_output(state: &mut RunState, request: &RunCodeRequest, slot: usize, bytes: &[u8], events: &Sender) {
    if slot == 0 {
        state.end.stdout_bytes += bytes.len() as u64;
    } else {
        state.end.stderr_bytes += bytes.len() as u64;
    }
    let room = request.max_output_bytes.saturating_sub(state.passed).min(bytes.len() as u64) as usize;
    state.end.output_truncated |= room < bytes.len();
    state.passed += room as u64;
    let data = state.decoders[slot].push(&bytes[..room]);
    if !data.is_empty() {
        let _ = events.send(output_event(slot, data));
    }
}

/// Act on one control message; true once the run has ended.
fn control_message(state: &mut RunState, message: &Value, events: &Sender) -> bool {
    match message["type"].as_str() {
        Some("result") => {
            let data = message["data"].as_object().cloned().unwrap_or_default();
            let main = message["main"].as_bool().unwrap_or(false);
            let _ = events.send(CodeEvent::Result { main, data });
        }
        Some("error") if !state.error_seen => {
            state.error_seen = true;
            let text = |key: &str| message[key].as_str().unwrap_or_default().to_owned();
            let traceback = message["traceback"]
                .as_array()
                .map(|lines| lines.iter().filter_map(|l| l.as_str().map(str::to_owned)).collect())
                .unwrap_or_default();
            let _ = events.send(CodeEvent::Error { name: text("name"), value: text("value"), traceback });
        }
        Some("too_large") => state.end.output_truncated = true,
        Some("exited") => state.exited = message["how"].as_str().map(str::to_owned),
        Some("end") => {
            state.end.exit_code = message["exit_code"].as_i64().map(|c| c as i32);
            state.end.status = match state.interrupted {
                Some((status, _)) => status,
                None if state.error_seen => RunStatus::Error,
                None if state.script && state.end.exit_code != Some(0) => RunStatus::Error,
                None => RunStatus::Ok,
            };
            return true;
        }
        _ => {}
    }
    false
}
