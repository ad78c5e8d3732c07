//! Code contexts: each is one kernel (a Python, Node or Bash process running a small script of
//! ours, see `kernels/`) started through a runner, and one worker thread that owns it. The worker
//! feeds the kernel one run at a time, passes its output and results on, interrupts it at the
//! run's timeout, and kills and restarts it when it ignores the interrupt or dies.
//!
//! Kernel protocol: requests arrive on the descriptor named by `AIRLOCK_REQUEST_FD` — one JSON
//! line `{"code", "mode", "execution_count", "event", ...}` for Python and Node, the code and a
//! NUL byte for Bash. Control messages go out on the one named by `AIRLOCK_CONTROL_FD`, one JSON
//! line each: `ready` (with the kernel's pid) once, then per run any `result`s, at most one
//! `error`, and one `end`. The kernel's stdout, stderr and control pipes all lead straight to
//! the worker, which reads whatever output is waiting before it acts on a control message, so a
//! run's output never arrives after its end.

mod control;
mod feed;
mod kernel;
mod request;
mod worker;

use std::collections::HashMap;
use std::ffi::OsString;
use std::sync::{mpsc, Arc, Mutex};

use feed::{Feed, Handed};
pub(crate) use worker::Msg;

use crate::agent::Replies;
use crate::protocol::{ContextStartRequest, Event, Language, RunCodeRequest};

/// How a worker is reached: its queue, the pipe that wakes it when something is queued, and
/// the idle kernel's request pipe while it lends it out.
#[derive(Clone)]
pub(crate) struct WorkerHandle {
    queue: mpsc::Sender<Msg>,
    wake: Arc<kernel::Wake>,
    feed: Arc<Mutex<Feed>>,
    language: Language,
}

impl WorkerHandle {
    /// Whether the request loop has started a run the worker has not taken over yet.
    fn feed_has_started(&self) -> bool {
        self.feed.lock().unwrap_or_else(|e| e.into_inner()).has_started()
    }

    fn send(&self, msg: Msg) -> Result<(), ()> {
        self.queue.send(msg).map_err(|_| ())?;
        self.wake.ring();
        Ok(())
    }
}

/// What the agent keeps of each context: the way to its worker.
pub(crate) type Contexts = Arc<Mutex<HashMap<String, WorkerHandle>>>;

/// Start context `id`'s worker; it answers [`Event::ContextReady`] or [`Event::Error`].
pub(crate) fn start(
    id: u64,
    spec: ContextStartRequest,
    runner: Arc<Vec<OsString>>,
    contexts: &Contexts,
    replies: &Replies,
) {
    let wake = match kernel::Wake::new() {
        Ok(wake) => Arc::new(wake),
        Err(e) => {
            replies.send(id, Event::Error { message: format!("cannot create the context's wake pipe: {e}") });
            return;
        }
    };
    let (queue, rx) = mpsc::channel();
    let handle = WorkerHandle { queue, wake, feed: Arc::default(), language: spec.language };
    {
        let mut table = lock(contexts);
        if table.contains_key(&spec.context) {
            replies.send(id, Event::Error { message: format!("context {} exists", spec.context) });
            return;
        }
        table.insert(spec.context.clone(), handle.clone());
    }
    let name = spec.context.clone();
    let mut worker = worker::Worker::new(spec, runner, handle, rx, replies.clone());
    let (contexts_for_thread, replies_for_thread) = (Arc::clone(contexts), replies.clone());
    let started = std::thread::Builder::new().spawn(move || match worker.start_kernel() {
        Ok(pid) => {
            replies_for_thread.send(id, Event::ContextReady { pid });
            worker.serve();
        }
        Err(message) => {
            lock(&contexts_for_thread).remove(worker.name());
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

/// Run code in context `name`: handed to its idle kernel at once when it can be, else to its
/// worker. The error says there is no such context.
pub(crate) fn run(contexts: &Contexts, name: &str, id: u64, request: RunCodeRequest) -> Result<(), String> {
    let worker = lock(contexts).get(name).cloned().ok_or_else(|| format!("no context {name}"))?;
    let started = worker.feed.lock().unwrap_or_else(|e| e.into_inner()).start(
        &worker.queue,
        worker.language,
        id,
        request,
    );
    let gone = || format!("context {name} has ended");
    match started {
        Handed::ToKernel => {
            worker.wake.ring();
            Ok(())
        }
        Handed::ToWorker(run) => {
            let (id, request) = *run;
            worker.send(Msg::Run(id, request)).map_err(|_| gone())
        }
        Handed::WorkerGone => Err(gone()),
    }
}

/// Take context `name` out of the table and stop its worker.
pub(crate) fn stop(contexts: &Contexts, name: &str, id: u64) -> Result<(), String> {
    let worker = lock(contexts).remove(name).ok_or_else(|| format!("no context {name}"))?;
    worker.send(Msg::Stop(id)).map_err(|_| format!("context {name} has ended"))
}

fn lock(contexts: &Contexts) -> std::sync::MutexGuard<'_, HashMap<String, WorkerHandle>> {
    contexts.lock().unwrap_or_else(|e| e.into_inner())
}
