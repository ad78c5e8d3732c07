//! A context's worker: the one thread that owns its kernel, feeds it one run at a time, passes
//! its output and results on, interrupts it at the run's timeout, and kills and restarts it when
//! it ignores the interrupt or dies.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde_json::Value;

use super::control::ControlLines;
use super::feed::{Feed, Started};
use super::kernel::{self, cpu_ticks, peak_rss, ticks_per_second, Kernel, Written};
use super::request::{check, request_line};
use super::WorkerHandle;
use crate::agent::Replies;
use crate::command::Utf8Chunks;
use crate::protocol::{
    CodeEnd, CodeMode, ContextStartRequest, Event, OutputStream, RunCodeRequest, RunStatus,
};

/// How long a kernel may take to report that it is ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a run may go on after its interrupt before its kernel is killed and restarted.
pub const INTERRUPT_GRACE: Duration = Duration::from_secs(2);

/// What a worker is told: by the request loop, or by the waiter of its kernel's runner.
pub(crate) enum Msg {
    /// Run code; answers go to this request id.
    Run(u64, RunCodeRequest),
    /// The request loop has handed a run to the idle kernel itself; follow it.
    Started(Box<Started>),
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
            self.lend();
            match self.next(None) {
                Ok(Input::Msg(Msg::Run(id, request))) => {
                    if self.reclaim() {
                        self.run(id, request);
                    } else {
                        self.busy(id);
                    }
                }
                Ok(Input::Msg(Msg::Started(started))) => self.take_over(*started),
                Ok(Input::Msg(Msg::Interrupt(id))) => self.replies.send(id, Event::Done),
                Ok(Input::Msg(Msg::Stop(id))) => {
                    self.reclaim();
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
                    self.reclaim();
                    if self.kernel.take().is_some() {
                        let _ = self.start_kernel();
                    }
                }
                Ok(Input::Msg(Msg::Exited(..))) => {}
                // Output of a run the request loop has just started comes after its start
                // message in the queue: take queued messages first.
                Ok(Input::Written(written)) if self.handle.feed_has_started() => {
                    if let Ok(msg) = self.rx.try_recv() {
                        self.queued.push_front(Input::Written(written));
                        self.queued.push_front(Input::Msg(msg));
                    }
                }
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

    /// Lend the idle, ready kernel's request pipe to the request loop (see [`Feed`]).
    fn lend(&mut self) {
        let Some(kernel) = self.kernel.as_mut().filter(|k| k.pid > 0) else { return };
        let Some(pipe) = kernel.requests.take() else { return };
        let mut feed = self.handle.feed.lock().unwrap_or_else(|e| e.into_inner());
        *feed = Feed { idle: Some(pipe), started: None, generation: self.generation, count: self.count };
    }

    /// Take the request pipe back from the request loop; false when the loop has used it to
    /// start a run, whose [`Msg::Started`] is on its way.
    fn reclaim(&mut self) -> bool {
        let mut feed = self.handle.feed.lock().unwrap_or_else(|e| e.into_inner());
        if feed.started.is_some() {
            return false;
        }
        let lent = feed.idle.take();
        drop(feed);
        if let (Some(kernel), Some(pipe)) = (self.kernel.as_mut(), lent) {
            kernel.requests = Some(pipe);
        }
        true
    }

    fn busy(&self, id: u64) {
        let message = format!("context {} is busy with another run", self.spec.context);
        self.replies.send(id, Event::Error { message });
    }

    /// Follow a run the request loop started; one started on a kernel that has since been
    /// replaced is run again on the new one.
    fn take_over(&mut self, started: Started) {
        let Started { id, request, generation, count, at } = started;
        // Taken under the feed's lock: the request loop has finished writing the request.
        let pipe = self.handle.feed.lock().unwrap_or_else(|e| e.into_inner()).started.take();
        if generation != self.generation || self.kernel.is_none() {
            drop(pipe);
            self.run(id, request);
            return;
        }
        if let Some(kernel) = self.kernel.as_mut() {
            kernel.requests = pipe;
        }
        self.count = count;
        let script = request.mode == CodeMode::Script;
        let state = self.run_state(id, &request, at);
        self.follow(state, &request);
        self.retire_after(script);
    }

    fn run(&mut self, id: u64, request: RunCodeRequest) {
        let script = request.mode == CodeMode::Script;
        self.run_once(id, request);
        self.retire_after(script);
    }

    /// A script may have changed anything in its kernel: the next run gets a fresh one.
    fn retire_after(&mut self, script: bool) {
        if script {
            if let Some(kernel) = self.kernel.take() {
                kernel.kill();
            }
        }
    }

    fn run_state(&self, id: u64, request: &RunCodeRequest, at: Instant) -> RunState {
        let pid = self.kernel.as_ref().map_or(0, |k| k.pid);
        RunState {
            id,
            started: at,
            deadline: request.timeout_ms.map(|ms| at + Duration::from_millis(ms)),
            interrupted: None,
            error_seen: false,
            passed: 0,
            end: CodeEnd { execution_count: self.count, ..CodeEnd::default() },
            decoders: Default::default(),
            cpu_before: cpu_ticks(pid),
            script: request.mode == CodeMode::Script,
        }
    }

    fn run_once(&mut self, id: u64, request: RunCodeRequest) {
        if let Err(message) = check(self.spec.language, &request) {
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
        let line = request_line(self.spec.language, &request, self.count);
        let mut state = self.run_state(id, &request, Instant::now());
        let written = self.kernel.as_mut().is_some_and(|k| k.send(&line).is_ok());
        if !written {
            self.lose(&mut state, "the kernel does not read its requests".to_owned());
            return;
        }
        self.follow(state, &request);
    }

    /// Pass a run's output and results on until its end.
    fn follow(&mut self, mut state: RunState, request: &RunCodeRequest) {
        loop {
            let wait = match state.interrupted {
                Some((_, at)) => Some((at + INTERRUPT_GRACE).saturating_duration_since(Instant::now())),
                None => state.deadline.map(|d| d.saturating_duration_since(Instant::now())),
            };
            match self.next(wait) {
                Ok(Input::Written(Written::Output(stream, bytes))) => {
                    self.output(&mut state, request, stream, &bytes)
                }
                Ok(Input::Written(Written::Control(bytes))) => {
                    // The answers to one read go out in one write: a result and the end that
                    // came with it wake the runtime once.
                    let mut answers = Vec::new();
                    for message in self.control.push(&bytes) {
                        if self.control_message(&mut state, &message, &mut answers) {
                            let finished = std::mem::replace(&mut state, RunState::placeholder());
                            self.finish(finished, answers);
                            return;
                        }
                    }
                    self.replies.send_all(state.id, answers);
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
                                self.output(&mut state, request, stream, &bytes);
                            }
                        }
                    }
                    self.kernel = None;
                    self.lose(&mut state, format!("the kernel ended during the run ({how})"));
                    return;
                }
                Ok(Input::Msg(Msg::Exited(..))) => {}
                Ok(Input::Msg(Msg::Run(other, _))) => self.busy(other),
                // The pipe is never lent during a run; a stray start is refused like a second run.
                Ok(Input::Msg(Msg::Started(other))) => self.busy(other.id),
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
                    self.finish(state, Vec::new());
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
                    self.finish(state, Vec::new());
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

    /// Act on one control message, adding what it answers to `answers`; true once the run has
    /// ended (its end is for [`Worker::finish`]).
    fn control_message(&self, state: &mut RunState, message: &Value, answers: &mut Vec<Event>) -> bool {
        match message["type"].as_str() {
            Some("result") => {
                let data = message["data"].as_object().cloned().unwrap_or_default();
                let main = message["main"].as_bool().unwrap_or(false);
                answers.push(Event::CodeResult { main, data });
            }
            Some("error") if !state.error_seen => {
                state.error_seen = true;
                let text = |key: &str| message[key].as_str().unwrap_or_default().to_owned();
                let traceback = message["traceback"]
                    .as_array()
                    .map(|lines| lines.iter().filter_map(|l| l.as_str().map(str::to_owned)).collect())
                    .unwrap_or_default();
                answers.push(Event::CodeError { name: text("name"), value: text("value"), traceback });
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
        self.finish(finished, Vec::new());
    }

    /// Send `answers`, what is left of the output, and the end, in one write.
    fn finish(&self, mut state: RunState, mut answers: Vec<Event>) {
        if !state.end.output_truncated {
            for (slot, stream) in [(0, OutputStream::Stdout), (1, OutputStream::Stderr)] {
                let data = state.decoders[slot].finish();
                if !data.is_empty() {
                    answers.push(Event::Output { stream, data });
                }
            }
        }
        let pid = self.kernel.as_ref().map_or(0, |k| k.pid);
        state.end.duration_ms = state.started.elapsed().as_millis() as u64;
        if pid > 0 && !state.end.restarted {
            state.end.cpu_ms = cpu_ticks(pid).saturating_sub(state.cpu_before) * 1000 / ticks_per_second();
            state.end.max_rss_bytes = peak_rss(pid);
        }
        answers.push(Event::CodeEnd(state.end));
        self.replies.send_all(state.id, answers);
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
