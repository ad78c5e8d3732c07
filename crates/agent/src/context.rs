//! Code contexts: each is one kernel (a Python, Node or Bash process running a small script of
//! ours) started through a runner with a control channel, and one worker thread that owns it.
//! The worker feeds the kernel one run at a time, passes its output and results on, interrupts
//! it at the run's timeout, and kills and restarts it when it ignores the interrupt or dies.
//!
//! Kernel protocol (the scripts in `kernels/`): requests arrive on the descriptor named by
//! `AIRLOCK_REQUEST_FD` — one JSON line `{"code", "mode", "execution_count", "event"}` for
//! Python and Node, the code and a NUL byte for Bash. Control messages go out on the one named by
//! `AIRLOCK_CONTROL_FD`, one JSON line each: `ready` once, then per run any `result`s, at most
//! one `error`, and one `end`. The runner passes a control message on only after the output the
//! kernel wrote before it, so a run's output never arrives after its end.

use std::collections::{HashMap, VecDeque};
use std::ffi::OsString;
use std::io::Write;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};

use crate::agent::Replies;
use crate::command::{read_frame, Utf8Chunks};
use crate::protocol::{
    CodeEnd, CodeMode, ContextStartRequest, Event, Language, OutputStream, RunCodeRequest, RunStatus,
};
use crate::runner::{Frame, RunnerExit};

/// How long a kernel may take to report that it is ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a run may go on after its interrupt before its kernel is killed and restarted.
pub const INTERRUPT_GRACE: Duration = Duration::from_secs(2);

/// The longest control message passed on; a larger result is dropped and the run's
/// `output_truncated` says so.
const MAX_CONTROL_LINE: usize = 8 << 20;

/// What the agent keeps of each context: the way to its worker.
pub(crate) type Contexts = Arc<Mutex<HashMap<String, mpsc::Sender<Msg>>>>;

/// What a worker is told, by the request loop or by its kernel's frame reader.
pub(crate) enum Msg {
    /// Run code; answers go to this request id.
    Run(u64, RunCodeRequest),
    /// Interrupt the run going on.
    Interrupt(u64),
    /// Kill the kernel and end the worker.
    Stop(u64),
    /// Something from the kernel of this generation (older generations are ignored).
    Kernel(u64, KernelMsg),
}

/// What a kernel's runner sent.
pub(crate) enum KernelMsg {
    Started(i32),
    Output(OutputStream, Vec<u8>),
    Control(Vec<u8>),
    Exit(Option<RunnerExit>),
}

/// The program and arguments that start a language's kernel.
fn kernel_argv(language: Language) -> Vec<String> {
    let (program, lead, source): (&str, &[&str], &str) = match language {
        Language::Python => ("python3", &["-c"], include_str!("kernels/python.py")),
        Language::Javascript => ("node", &["-e"], include_str!("kernels/node.js")),
        Language::Bash => ("bash", &["--norc", "--noprofile", "-c"], include_str!("kernels/bash.sh")),
    };
    std::iter::once(program).chain(lead.iter().copied()).chain([source]).map(str::to_owned).collect()
}

/// Start context `id`'s worker; it answers [`Event::ContextReady`] or [`Event::Error`].
pub(crate) fn start(
    id: u64,
    spec: ContextStartRequest,
    runner: Arc<Vec<OsString>>,
    contexts: &Contexts,
    replies: &Replies,
) {
    let (tx, rx) = mpsc::channel();
    {
        let mut table = lock(contexts);
        if table.contains_key(&spec.context) {
            replies.send(id, Event::Error { message: format!("context {} exists", spec.context) });
            return;
        }
        table.insert(spec.context.clone(), tx.clone());
    }
    let name = spec.context.clone();
    let mut worker = Worker {
        spec,
        runner,
        tx,
        rx,
        pending: VecDeque::new(),
        replies: replies.clone(),
        kernel: None,
        generation: 0,
        count: 0,
        control: ControlLines::default(),
    };
    let (contexts_for_thread, replies_for_thread) = (Arc::clone(contexts), replies.clone());
    let started = std::thread::Builder::new().spawn(move || match worker.start_kernel() {
        Ok(pid) => {
            replies_for_thread.send(id, Event::ContextReady { pid });
            worker.serve();
        }
        Err(message) => {
            lock(&contexts_for_thread).remove(&worker.spec.context);
            replies_for_thread.send(id, Event::Error { message });
        }
    });
    if let Err(e) = started {
        lock(contexts).remove(&name);
        replies.send(id, Event::Error { message: format!("cannot start a thread for the context: {e}") });
    }
}

/// Hand `msg` to context `name`'s worker; the error says there is no such context.
pub(crate) fn send(contexts: &Contexts, name: &str, msg: Msg) -> Result<(), String> {
    let table = lock(contexts);
    let worker = table.get(name).ok_or_else(|| format!("no context {name}"))?;
    worker.send(msg).map_err(|_| format!("context {name} has ended"))
}

/// Take context `name` out of the table and stop its worker.
pub(crate) fn stop(contexts: &Contexts, name: &str, id: u64) -> Result<(), String> {
    let worker = lock(contexts).remove(name).ok_or_else(|| format!("no context {name}"))?;
    worker.send(Msg::Stop(id)).map_err(|_| format!("context {name} has ended"))
}

fn lock(contexts: &Contexts) -> std::sync::MutexGuard<'_, HashMap<String, mpsc::Sender<Msg>>> {
    contexts.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running kernel.
struct Kernel {
    runner: Child,
    requests: ChildStdin,
    runner_pid: i32,
    pid: i32,
}

impl Kernel {
    /// Kill the kernel and all it started, and reap its runner.
    fn kill(mut self) {
        crate::runner::kill_tree(self.runner_pid);
        let _ = self.runner.wait();
    }
}

/// The one thread that owns a context's kernel.
struct Worker {
    spec: ContextStartRequest,
    runner: Arc<Vec<OsString>>,
    /// Given to each kernel's frame reader.
    tx: mpsc::Sender<Msg>,
    rx: mpsc::Receiver<Msg>,
    /// Requests that arrived while the worker waited for a kernel to start.
    pending: VecDeque<Msg>,
    replies: Replies,
    kernel: Option<Kernel>,
    /// Bumped for each kernel, so that the frames of a killed one are told apart.
    generation: u64,
    /// Runs in the current kernel.
    count: u64,
    /// The kernel's control messages, split into lines.
    control: ControlLines,
}

/// What a run has seen so far.
struct RunState {
    id: u64,
    started: Instant,
    deadline: Option<Instant>,
    /// Set once the run was interrupted, by its timeout or a request.
    interrupted: Option<(RunStatus, Instant)>,
    error_seen: bool,
    passed: u64,
    end: CodeEnd,
    decoders: [Utf8Chunks; 2],
    cpu_before: u64,
    /// Script mode: the exit code decides the status, and a timeout kills at once.
    script: bool,
}

impl Worker {
    fn next(&mut self, timeout: Option<Duration>) -> Result<Msg, mpsc::RecvTimeoutError> {
        if let Some(msg) = self.pending.pop_front() {
            return Ok(msg);
        }
        match timeout {
            Some(t) => self.rx.recv_timeout(t),
            None => self.rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected),
        }
    }

    /// Serve runs until stopped.
    fn serve(&mut self) {
        loop {
            match self.next(None) {
                Ok(Msg::Run(id, request)) => self.run(id, request),
                Ok(Msg::Interrupt(id)) => self.replies.send(id, Event::Done),
                Ok(Msg::Stop(id)) => {
                    if let Some(kernel) = self.kernel.take() {
                        kernel.kill();
                    }
                    self.replies.send(id, Event::Done);
                    return;
                }
                // A kernel that ended between runs (a thread of the code called `os._exit`, say)
                // is replaced at once, so the next run finds a context.
                Ok(Msg::Kernel(generation, KernelMsg::Exit(_))) if generation == self.generation => {
                    if let Some(kernel) = self.kernel.take() {
                        kernel.kill();
                    }
                    let _ = self.start_kernel();
                }
                // Output written between runs belongs to no run.
                Ok(Msg::Kernel(..)) => {}
                Err(_) => return,
            }
        }
    }

    /// Start a fresh kernel and wait until it is ready; returns its pid.
    fn start_kernel(&mut self) -> Result<i32, String> {
        self.generation += 1;
        self.count = 0;
        self.control = ControlLines::default();
        let generation = self.generation;
        let Some((program, lead)) = self.runner.split_first() else {
            return Err("no runner configured".to_owned());
        };
        let mut command = Command::new(program);
        command
            .args(lead)
            .arg("--control")
            .arg("--cwd")
            .arg(&self.spec.cwd)
            .arg("--")
            .args(kernel_argv(self.spec.language))
            .envs(self.spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut runner = command.spawn().map_err(|e| format!("cannot start the runner: {e}"))?;
        let (Some(requests), Some(mut frames)) = (runner.stdin.take(), runner.stdout.take()) else {
            return Err("the runner has no pipes".to_owned());
        };
        let runner_pid = runner.id() as i32;
        let tx = self.tx.clone();
        let reader = std::thread::Builder::new().spawn(move || {
            let mut exit = None;
            while let Some((frame, body)) = read_frame(&mut frames) {
                let msg = match frame {
                    Frame::Started => match std::str::from_utf8(&body).ok().and_then(|t| t.parse().ok()) {
                        Some(pid) => KernelMsg::Started(pid),
                        None => continue,
                    },
                    Frame::Stdout => KernelMsg::Output(OutputStream::Stdout, body),
                    Frame::Stderr => KernelMsg::Output(OutputStream::Stderr, body),
                    Frame::Control => KernelMsg::Control(body),
                    Frame::Exit => {
                        exit = serde_json::from_slice(&body).ok();
                        continue;
                    }
                };
                if tx.send(Msg::Kernel(generation, msg)).is_err() {
                    return;
                }
            }
            let _ = tx.send(Msg::Kernel(generation, KernelMsg::Exit(exit)));
        });
        if let Err(e) = reader {
            crate::runner::kill_tree(runner_pid);
            let _ = runner.wait();
            return Err(format!("cannot start a thread for the kernel: {e}"));
        }
        let mut kernel = Kernel { runner, requests, runner_pid, pid: 0 };
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut early_output = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let msg = match self.rx.recv_timeout(left) {
                Ok(msg) => msg,
                Err(_) => {
                    kernel.kill();
                    return Err(format!(
                        "the {} kernel was not ready within {} s",
                        self.spec.language.as_str(),
                        READY_TIMEOUT.as_secs()
                    ));
                }
            };
            match msg {
                Msg::Kernel(g, km) if g == generation => match km {
                    KernelMsg::Started(pid) => kernel.pid = pid,
                    KernelMsg::Output(_, bytes) => {
                        early_output.extend_from_slice(&bytes[..bytes.len().min(4096)]);
                    }
                    KernelMsg::Control(bytes) => {
                        if self.control.push(&bytes).iter().any(|m| m["type"] == "ready") {
                            self.kernel = Some(kernel);
                            return Ok(self.kernel.as_ref().map_or(0, |k| k.pid));
                        }
                    }
                    KernelMsg::Exit(exit) => {
                        let _ = kernel.runner.wait();
                        let why = match exit {
                            Some(RunnerExit { spawn_error: Some(e), .. }) => e,
                            Some(e) => format!(
                                "it ended before it was ready (exit code {:?}, signal {:?}): {}",
                                e.exit_code,
                                e.signal,
                                String::from_utf8_lossy(&early_output).trim()
                            ),
                            None => "its runner ended without a report".to_owned(),
                        };
                        return Err(format!(
                            "cannot start the {} kernel: {why}",
                            self.spec.language.as_str()
                        ));
                    }
                },
                Msg::Kernel(..) => {}
                other => self.pending.push_back(other),
            }
        }
    }

    fn run(&mut self, id: u64, request: RunCodeRequest) {
        let script = request.mode == CodeMode::Script;
        self.run_once(id, request);
        // A script may have changed anything in its kernel: the next run gets a fresh one.
        if script {
            if let Some(kernel) = self.kernel.take() {
                kernel.kill();
            }
        }
    }

    fn run_once(&mut self, id: u64, request: RunCodeRequest) {
        if let Err(message) = self.check(&request) {
            self.replies.send(id, Event::Error { message });
            return;
        }
        if self.kernel.is_none() {
            if let Err(message) = self.start_kernel() {
                self.replies.send(id, Event::Error { message });
                return;
            }
        }
        self.count += 1;
        let line = match self.spec.language {
            Language::Bash => {
                let mut bytes = request.code.clone().into_bytes();
                bytes.push(0);
                bytes
            }
            Language::Python | Language::Javascript => {
                let mut bytes = serde_json::to_vec(&json!({
                    "code": request.code,
                    "mode": request.mode,
                    "execution_count": self.count,
                    "event": request.event,
                    "stdin": request.stdin,
                    "env": request.env.iter().map(|(k, v)| (k.clone(), Value::from(v.as_str()))).collect::<serde_json::Map<String, Value>>(),
                    "filename": request.filename,
                }))
                .unwrap_or_default();
                bytes.push(b'\n');
                bytes
            }
        };
        let pid = self.kernel.as_ref().map_or(0, |k| k.pid);
        let now = Instant::now();
        let mut state = RunState {
            id,
            started: now,
            deadline: request.timeout_ms.map(|ms| now + Duration::from_millis(ms)),
            interrupted: None,
            error_seen: false,
            passed: 0,
            end: CodeEnd { execution_count: self.count, ..CodeEnd::default() },
            decoders: Default::default(),
            cpu_before: cpu_ticks(pid),
            script: request.mode == CodeMode::Script,
        };
        let written = self.kernel.as_mut().is_some_and(|k| k.requests.write_all(&line).is_ok());
        if !written {
            self.lose(&mut state, "the kernel does not read its requests".to_owned());
            return;
        }
        loop {
            let wait = match state.interrupted {
                Some((_, at)) => Some((at + INTERRUPT_GRACE).saturating_duration_since(Instant::now())),
                None => state.deadline.map(|d| d.saturating_duration_since(Instant::now())),
            };
            match self.next(wait) {
                Ok(Msg::Kernel(g, km)) if g == self.generation => match km {
                    KernelMsg::Output(stream, bytes) => self.output(&mut state, &request, stream, &bytes),
                    KernelMsg::Control(bytes) => {
                        for message in self.control.push(&bytes) {
                            if self.control_message(&mut state, &message) {
                                return;
                            }
                        }
                    }
                    KernelMsg::Exit(exit) => {
                        let how = match exit {
                            Some(e) => match (e.exit_code, e.signal) {
                                (Some(code), _) => format!("exit code {code}"),
                                (None, Some(signal)) => format!("signal {signal}"),
                                _ => "no exit status".to_owned(),
                            },
                            None => "no report".to_owned(),
                        };
                        self.lose(&mut state, format!("the kernel ended during the run ({how})"));
                        return;
                    }
                    KernelMsg::Started(_) => {}
                },
                Ok(Msg::Kernel(..)) => {}
                Ok(Msg::Run(other, _)) => self.replies.send(
                    other,
                    Event::Error {
                        message: format!("context {} is busy with another run", self.spec.context),
                    },
                ),
                Ok(Msg::Interrupt(other)) => {
                    self.interrupt(&mut state, RunStatus::Interrupted);
                    self.replies.send(other, Event::Done);
                }
                Ok(Msg::Stop(other)) => {
                    if let Some(kernel) = self.kernel.take() {
                        kernel.kill();
                    }
                    state.end.status = RunStatus::ContextLost;
                    state.end.message = Some("the context was stopped".to_owned());
                    self.finish(state);
                    self.replies.send(other, Event::Done);
                    // Nothing reaches this worker any more: its entry left the table first.
                    self.pending.clear();
                    return;
                }
                Err(mpsc::RecvTimeoutError::Timeout) if state.script => {
                    // A program has no state worth an interrupt: its timeout kills it.
                    if let Some(kernel) = self.kernel.take() {
                        kernel.kill();
                    }
                    state.end.status = RunStatus::Timeout;
                    state.end.message = Some("its timeout killed it".to_owned());
                    self.finish(state);
                    return;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => match state.interrupted {
                    None => self.interrupt(&mut state, RunStatus::Timeout),
                    Some((status, _)) => {
                        state.end.status = status;
                        let message = format!(
                            "the code did not stop within {} s of its interrupt: the context was restarted",
                            INTERRUPT_GRACE.as_secs()
                        );
                        self.restart(&mut state, message);
                        return;
                    }
                },
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    fn check(&self, request: &RunCodeRequest) -> Result<(), String> {
        match (self.spec.language, request.mode) {
            (Language::Bash, CodeMode::Handler) => {
                Err("handler mode is for python and javascript contexts, not bash".to_owned())
            }
            (Language::Bash | Language::Javascript, CodeMode::Script) => {
                Err("script mode is for python contexts".to_owned())
            }
            (Language::Bash, _) if request.code.contains('\0') => {
                Err("bash code cannot contain a NUL character".to_owned())
            }
            _ => Ok(()),
        }
    }

    fn output(&self, state: &mut RunState, request: &RunCodeRequest, stream: OutputStream, bytes: &[u8]) {
        let slot = match stream {
            OutputStream::Stdout => {
                state.end.stdout_bytes += bytes.len() as u64;
                0
            }
            OutputStream::Stderr => {
                state.end.stderr_bytes += bytes.len() as u64;
                1
            }
        };
        let room = request.max_output_bytes.saturating_sub(state.passed).min(bytes.len() as u64) as usize;
        state.end.output_truncated |= room < bytes.len();
        state.passed += room as u64;
        let data = state.decoders[slot].push(&bytes[..room]);
        if !data.is_empty() {
            self.replies.send(state.id, Event::Output { stream, data });
        }
    }

    /// Act on one control message; true once the run has ended.
    fn control_message(&self, state: &mut RunState, message: &Value) -> bool {
        match message["type"].as_str() {
            Some("result") => {
                let data = message["data"].as_object().cloned().unwrap_or_default();
                let main = message["main"].as_bool().unwrap_or(false);
                self.replies.send(state.id, Event::CodeResult { main, data });
            }
            Some("error") if !state.error_seen => {
                state.error_seen = true;
                let text = |key: &str| message[key].as_str().unwrap_or_default().to_owned();
                let traceback = message["traceback"]
                    .as_array()
                    .map(|lines| lines.iter().filter_map(|l| l.as_str().map(str::to_owned)).collect())
                    .unwrap_or_default();
                self.replies
                    .send(state.id, Event::CodeError { name: text("name"), value: text("value"), traceback });
            }
            Some("too_large") => state.end.output_truncated = true,
            Some("end") => {
                state.end.exit_code = message["exit_code"].as_i64().map(|c| c as i32);
                state.end.status = match state.interrupted {
                    Some((status, _)) => status,
                    None if state.error_seen => RunStatus::Error,
                    None if state.script && state.end.exit_code != Some(0) => RunStatus::Error,
                    None => RunStatus::Ok,
                };
                let finished = std::mem::replace(state, RunState::placeholder());
                self.finish(finished);
                return true;
            }
            _ => {}
        }
        false
    }

    /// Send SIGINT to the kernel's process group, once per run.
    fn interrupt(&self, state: &mut RunState, why: RunStatus) {
        if state.interrupted.is_some() {
            return;
        }
        state.interrupted = Some((why, Instant::now()));
        if let Some(kernel) = &self.kernel {
            if kernel.pid > 0 {
                let _ = killpg(Pid::from_raw(kernel.pid), Signal::SIGINT);
            }
        }
    }

    /// The kernel is gone during a run: start a fresh one and end the run saying so.
    fn lose(&mut self, state: &mut RunState, why: String) {
        state.end.status = RunStatus::ContextLost;
        self.restart(state, why);
    }

    fn restart(&mut self, state: &mut RunState, why: String) {
        if let Some(kernel) = self.kernel.take() {
            kernel.kill();
        }
        let mut finished = std::mem::replace(state, RunState::placeholder());
        finished.end.message = Some(match self.start_kernel() {
            Ok(_) => {
                finished.end.restarted = true;
                why
            }
            Err(e) => format!("{why}; {e}"),
        });
        self.finish(finished);
    }

    /// Send what is left of the output, then the end.
    fn finish(&self, mut state: RunState) {
        if !state.end.output_truncated {
            for (slot, stream) in [(0, OutputStream::Stdout), (1, OutputStream::Stderr)] {
                let data = state.decoders[slot].finish();
                if !data.is_empty() {
                    self.replies.send(state.id, Event::Output { stream, data });
                }
            }
        }
        let pid = self.kernel.as_ref().map_or(0, |k| k.pid);
        state.end.duration_ms = state.started.elapsed().as_millis() as u64;
        if pid > 0 && !state.end.restarted {
            state.end.cpu_ms = cpu_ticks(pid).saturating_sub(state.cpu_before) * 1000 / ticks_per_second();
            state.end.max_rss_bytes = peak_rss(pid);
        }
        self.replies.send(state.id, Event::CodeEnd(state.end));
    }
}

impl RunState {
    fn placeholder() -> RunState {
        RunState {
            id: 0,
            started: Instant::now(),
            deadline: None,
            interrupted: None,
            error_seen: false,
            passed: 0,
            end: CodeEnd::default(),
            decoders: Default::default(),
            cpu_before: 0,
            script: false,
        }
    }
}

/// Splits a kernel's control bytes into JSON messages, one per line.
#[derive(Default)]
struct ControlLines {
    /// Bytes of a message not yet ending in a newline.
    partial: Vec<u8>,
    /// Whether the message being read is too long to keep.
    skipping: bool,
}

impl ControlLines {
    /// The messages completed by `bytes`. A message longer than [`MAX_CONTROL_LINE`] is not
    /// kept: it becomes `{"type": "too_large"}`. Lines that are not JSON are skipped.
    fn push(&mut self, bytes: &[u8]) -> Vec<Value> {
        let mut messages = Vec::new();
        for piece in bytes.split_inclusive(|b| *b == b'\n') {
            let complete = piece.ends_with(b"\n");
            if !self.skipping {
                self.partial.extend_from_slice(piece);
                self.skipping = self.partial.len() > MAX_CONTROL_LINE;
            }
            if self.skipping {
                self.partial.clear();
                if complete {
                    self.skipping = false;
                    messages.push(json!({"type": "too_large"}));
                }
            } else if complete {
                if let Ok(message) = serde_json::from_slice::<Value>(&self.partial) {
                    messages.push(message);
                }
                self.partial.clear();
            }
        }
        messages
    }
}

/// CPU time of `pid` and of the children it waited for, in clock ticks.
fn cpu_ticks(pid: i32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0 };
    // After `pid (comm) `: state is field 0, utime 11, stime 12, cutime 13, cstime 14.
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else { return 0 };
    rest.split_whitespace().skip(11).take(4).filter_map(|t| t.parse::<u64>().ok()).sum()
}

fn ticks_per_second() -> u64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(ticks)) if ticks > 0 => ticks as u64,
        _ => 100,
    }
}

/// Peak resident memory of `pid` (`VmHWM`), in bytes.
fn peak_rss(pid: i32) -> u64 {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else { return 0 };
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{ControlLines, MAX_CONTROL_LINE};

    #[test]
    fn control_messages_split_across_chunks_arrive_whole() {
        let mut lines = ControlLines::default();
        assert!(lines.push(br#"{"type": "res"#).is_empty());
        assert_eq!(
            lines.push(b"ult\"}\n{\"type\": \"end\"}\nnot json\n{"),
            [json!({"type": "result"}), json!({"type": "end"})]
        );
        assert_eq!(lines.push(b"}\n"), [json!({})]);
    }

    #[test]
    fn an_oversized_message_is_replaced_and_the_next_one_kept() {
        let mut lines = ControlLines::default();
        let big = vec![b'x'; MAX_CONTROL_LINE / 2];
        assert!(lines.push(&big).is_empty());
        assert!(lines.push(&big).is_empty());
        assert!(lines.push(&big).is_empty());
        assert_eq!(
            lines.push(b"x\n{\"type\": \"end\"}\n"),
            [json!({"type": "too_large"}), json!({"type": "end"})]
        );
        assert!(lines.partial.is_empty());
    }
}
