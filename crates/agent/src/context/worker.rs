//! A context's worker: the one thread that owns its kernel, feeds it one run at a time, passes
//! its output and results on, interrupts it at the run's timeout, and kills and restarts it when
//! it ignores the interrupt or dies.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};

use super::control::ControlLines;
use super::kernel::{self, Kernel, Written};
use super::WorkerHandle;
use crate::agent::Replies;
use crate::command::Utf8Chunks;
use crate::protocol::{
    CodeEnd, CodeMode, ContextStartRequest, Event, Language, OutputStream, RunCodeRequest, RunStatus,
};

/// How long a kernel may take to report that it is ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a run may go on after its interrupt before its kernel is killed and restarted.
pub const INTERRUPT_GRACE: Duration = Duration::from_secs(2);

/// What a worker is told: by the request loop, or by the waiter of its kernel's runner.
pub(crate) enum Msg {
    /// Run code; answers go to this request id.
    Run(u64, RunCodeRequest),
    /// Interrupt the run going on.
    Interrupt(u64),
    /// Kill the kernel and end the worker.
    Stop(u64),
    /// The runner of the kernel of this generation ended, as the text says (older generations
    /// are ignored).
    Exited(u64, String),
}

/// What the worker acts on next.
enum Input {
    Msg(Msg),
    Written(Written),
}

/// Why [`Worker::next`] returned nothing.
enum Quiet {
    /// The wait's time is up.
    Timeout,
    /// Nobody can send to the worker any more.
    Closed,
}

/// The one thread that owns a context's kernel.
pub(super) struct Worker {
    spec: ContextStartRequest,
    runner: Arc<Vec<OsString>>,
    /// Its own handle: for the waiter of each kernel, and the wake pipe it polls.
    handle: WorkerHandle,
    rx: mpsc::Receiver<Msg>,
    /// Read but not yet acted on.
    queued: VecDeque<Input>,
    /// Requests that arrived while a kernel was starting, for after.
    deferred: VecDeque<Msg>,
    replies: Replies,
    kernel: Option<Kernel>,
    /// Bumped for each kernel, so that the end of a killed one is told apart.
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
    pub(super) fn new(
        spec: ContextStartRequest,
        runner: Arc<Vec<OsString>>,
        handle: WorkerHandle,
        rx: mpsc::Receiver<Msg>,
        replies: Replies,
    ) -> Worker {
        Worker {
            spec,
            runner,
            handle,
            rx,
            queued: VecDeque::new(),
            deferred: VecDeque::new(),
            replies,
            kernel: None,
            generation: 0,
            count: 0,
            control: ControlLines::default(),
        }
    }

    /// The context's name.
    pub(super) fn name(&self) -> &str {
        &self.spec.context
    }

    /// The next thing to act on, waiting up to `timeout` (for ever with `None`).
    fn next(&mut self, timeout: Option<Duration>) -> Result<Input, Quiet> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            if let Some(input) = self.queued.pop_front() {
                return Ok(input);
            }
            match self.rx.try_recv() {
                Ok(msg) => return Ok(Input::Msg(msg)),
                Err(mpsc::TryRecvError::Disconnected) => return Err(Quiet::Closed),
                Err(mpsc::TryRecvError::Empty) => {}
            }
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left == Some(Duration::ZERO) {
                return Err(Quiet::Timeout);
            }
            let written = kernel::wait(self.kernel.as_mut(), &self.handle.wake, left);
            self.queued.extend(written.into_iter().map(Input::Written));
        }
    }

    /// Serve runs until stopped.
    pub(super) fn serve(&mut self) {
        loop {
            match self.next(None) {
                Ok(Input::Msg(Msg::Run(id, request))) => self.run(id, request),
                Ok(Input::Msg(Msg::Interrupt(id))) => self.replies.send(id, Event::Done),
                Ok(Input::Msg(Msg::Stop(id))) => {
                    if let Some(kernel) = self.kernel.take() {
                        kernel.kill();
                    }
                    self.replies.send(id, Event::Done);
                    return;
                }
                // A kernel that ended between runs by itself (a thread of the code called
                // `os._exit`, say) is replaced at once, so the next run finds a context. One the
                // worker killed (a retired script kernel) is not.
                Ok(Input::Msg(Msg::Exited(generation, _))) if generation == self.generation => {
                    if self.kernel.take().is_some() {
                        let _ = self.start_kernel();
                    }
                }
                Ok(Input::Msg(Msg::Exited(..))) => {}
                // Output written between runs belongs to no run; control bytes still go through
                // the line splitter, so that it stays in step.
                Ok(Input::Written(Written::Control(bytes))) => {
                    self.control.push(&bytes);
                }
                Ok(Input::Written(Written::Output(..))) => {}
                Err(_) => return,
            }
        }
    }

    /// Start a fresh kernel and wait until it is ready; returns its pid.
    pub(super) fn start_kernel(&mut self) -> Result<i32, String> {
        self.generation += 1;
        self.count = 0;
        self.control = ControlLines::default();
        let generation = self.generation;
        let handle = self.handle.clone();
        let kernel = Kernel::spawn(&self.runner, &self.spec, move |how| {
            let _ = handle.send(Msg::Exited(generation, how));
        })?;
        self.kernel = Some(kernel);
        let started = self.wait_until_ready(generation);
        // What arrived meanwhile is served next, in order.
        while let Some(msg) = self.deferred.pop_back() {
            self.queued.push_front(Input::Msg(msg));
        }
        started
    }

    fn wait_until_ready(&mut self, generation: u64) -> Result<i32, String> {
        let language = self.spec.language.as_str();
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut early_output = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(Some(left)) {
                Err(_) => {
                    if let Some(kernel) = self.kernel.take() {
                        kernel.kill();
                    }
                    return Err(format!(
                        "the {language} kernel was not ready within {} s",
                        READY_TIMEOUT.as_secs()
                    ));
                }
                Ok(Input::Written(Written::Output(_, bytes))) => {
                    let room = 4096usize.saturating_sub(early_output.len());
                    early_output.extend_from_slice(&bytes[..bytes.len().min(room)]);
                }
                Ok(Input::Written(Written::Control(bytes))) => {
                    if let Some(ready) = self.control.push(&bytes).into_iter().find(|m| m["type"] == "ready")
                    {
                        let pid = ready["pid"].as_i64().unwrap_or(0) as i32;
                        if let Some(kernel) = self.kernel.as_mut() {
                            kernel.pid = pid;
                        }
                        return Ok(pid);
                    }
                }
                Ok(Input::Msg(Msg::Exited(g, how))) if g == generation => {
                    self.kernel = None;
                    let printed = String::from_utf8_lossy(&early_output);
                    return Err(format!(
                        "cannot start the {language} kernel: it ended before it was ready ({how}): {}",
                        printed.trim()
                    ));
                }
                Ok(Input::Msg(Msg::Exited(..))) => {}
                Ok(Input::Msg(other)) => self.deferred.push_back(other),
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
        let written = self.kernel.as_mut().is_some_and(|k| k.send(&line).is_ok());
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
                Ok(Input::Written(Written::Output(stream, bytes))) => {
                    self.output(&mut state, &request, stream, &bytes)
                }
                Ok(Input::Written(Written::Control(bytes))) => {
                    for message in self.control.push(&bytes) {
                        if self.control_message(&mut state, &message) {
                            return;
                        }
                    }
                }
                Ok(Input::Msg(Msg::Exited(generation, how))) if generation == self.generation => {
                    // Whatever the kernel wrote before it ended still belongs to the run.
                    loop {
                        let written =
                            kernel::wait(self.kernel.as_mut(), &self.handle.wake, Some(Duration::ZERO));
                        if written.is_empty() {
                            break;
                        }
                        for piece in written {
                            if let Written::Output(stream, bytes) = piece {
                                self.output(&mut state, &request, stream, &bytes);
                            }
                        }
                    }
                    self.kernel = None;
                    self.lose(&mut state, format!("the kernel ended during the run ({how})"));
                    return;
                }
                Ok(Input::Msg(Msg::Exited(..))) => {}
                Ok(Input::Msg(Msg::Run(other, _))) => self.replies.send(
                    other,
                    Event::Error {
                        message: format!("context {} is busy with another run", self.spec.context),
                    },
                ),
                Ok(Input::Msg(Msg::Interrupt(other))) => {
                    self.interrupt(&mut state, RunStatus::Interrupted);
                    self.replies.send(other, Event::Done);
                }
                Ok(Input::Msg(Msg::Stop(other))) => {
                    if let Some(kernel) = self.kernel.take() {
                        kernel.kill();
                    }
                    state.end.status = RunStatus::ContextLost;
                    state.end.message = Some("the context was stopped".to_owned());
                    self.finish(state);
                    self.replies.send(other, Event::Done);
                    // Nothing reaches this worker any more: its entry left the table first.
                    self.queued.clear();
                    return;
                }
                Err(Quiet::Timeout) if state.script => {
                    // A program has no state worth an interrupt: its timeout kills it.
                    if let Some(kernel) = self.kernel.take() {
                        kernel.kill();
                    }
                    state.end.status = RunStatus::Timeout;
                    state.end.message = Some("its timeout killed it".to_owned());
                    self.finish(state);
                    return;
                }
                Err(Quiet::Timeout) => match state.interrupted {
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
                Err(Quiet::Closed) => return,
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
