//! Code contexts: each is one kernel (a Python, Node or Bash process running a small script of
//! ours, see `kernels/`) started through a runner. The agent starts it, waits until it says it is
//! ready, and hands the runtime the kernel's four pipes with its answer. From then on the runtime
//! writes each run's request and reads the run's output and control messages itself, so a run
//! goes from the server to the kernel and back with no process in between. The agent keeps the
//! kernel's life: it interrupts it and kills it on request, and reaps its runner.
//!
//! Kernel protocol: requests arrive on the descriptor named by `AIRLOCK_REQUEST_FD` — one JSON
//! line `{"code", "mode", "execution_count", "event", ...}` for Python and Node, the code and a
//! NUL byte for Bash. Control messages go out on the one named by `AIRLOCK_CONTROL_FD`, one JSON
//! line each: `ready` (with the kernel's pid) once, then per run any `result`s, at most one
//! `error`, and one `end`. A kernel flushes a run's output before it writes a control message,
//! so whoever reads its pipes has the run's output once the `end` is readable. When the kernel
//! has ended, the agent adds `{"type": "exited", "how": "signal 9"}` (say) before the pipe's end.

mod kernel;

use std::collections::HashMap;
use std::ffi::OsString;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use crate::agent::Replies;
use crate::protocol::{ContextStartRequest, Event};

/// What the agent keeps of a context's kernel.
#[derive(Clone, Copy)]
pub(crate) struct Entry {
    /// Tells this kernel from a later one of the same name, for its runner's waiter.
    generation: u64,
    /// Its runner: every process of the kernel descends from it. 0 while it starts.
    runner_pid: i32,
    /// The kernel, which leads its process group. 0 until it is ready.
    kernel_pid: i32,
}

/// The contexts by name.
pub(crate) type Contexts = Arc<Mutex<HashMap<String, Entry>>>;

static GENERATIONS: AtomicU64 = AtomicU64::new(1);

/// Start context `id`'s kernel on a thread of its own; it answers [`Event::ContextReady`] with
/// the kernel's pipes, or [`Event::Error`].
pub(crate) fn start(
    id: u64,
    spec: ContextStartRequest,
    runner: Arc<Vec<OsString>>,
    contexts: &Contexts,
    replies: &Replies,
) {
    let generation = GENERATIONS.fetch_add(1, Ordering::Relaxed);
    {
        let mut table = lock(contexts);
        if table.contains_key(&spec.context) {
            replies.send(id, Event::Error { message: format!("context {} exists", spec.context) });
            return;
        }
        table.insert(spec.context.clone(), Entry { generation, runner_pid: 0, kernel_pid: 0 });
    }
    let spec_name = spec.context.clone();
    let (name, table, answer) = (spec.context.clone(), Arc::clone(contexts), replies.clone());
    let started = std::thread::Builder::new().spawn(move || {
        let on_exit = {
            let (table, name) = (Arc::clone(&table), name.clone());
            move || forget(&table, &name, generation)
        };
        let started = kernel::Kernel::spawn(&runner, &spec, on_exit).and_then(|mut kernel| {
            let runner_pid = kernel.runner_pid;
            if let Some(entry) = lock(&table).get_mut(&name).filter(|e| e.generation == generation) {
                entry.runner_pid = runner_pid;
            }
            match kernel.wait_until_ready(spec.language) {
                Ok(pid) => Ok((runner_pid, pid, kernel.into_pipes())),
                Err(message) => {
                    crate::runner::kill_tree(runner_pid);
                    Err(message)
                }
            }
        });
        match started {
            Ok((runner_pid, pid, pipes)) => {
                match lock(&table).get_mut(&name).filter(|e| e.generation == generation) {
                    Some(entry) => entry.kernel_pid = pid,
                    // Stopped while it started, maybe before its runner was known.
                    None => {
                        crate::runner::kill_tree(runner_pid);
                        answer.send(id, Event::Error { message: format!("context {name} was stopped") });
                        return;
                    }
                }
                answer.send_with_fds(id, Event::ContextReady { pid }, pipes);
            }
            Err(message) => {
                forget(&table, &name, generation);
                answer.send(id, Event::Error { message });
            }
        }
    });
    if let Err(e) = started {
        forget(contexts, &spec_name, generation);
        replies.send(id, Event::Error { message: format!("cannot start a thread for the context: {e}") });
    }
}

/// Send SIGINT to context `name`'s kernel and all in its process group: the run going on, if
/// any, gets a KeyboardInterrupt (or its language's like). The error says there is no such
/// context.
pub(crate) fn interrupt(contexts: &Contexts, name: &str) -> Result<(), String> {
    let kernel_pid =
        lock(contexts).get(name).map(|e| e.kernel_pid).ok_or_else(|| format!("no context {name}"))?;
    if kernel_pid > 0 {
        let _ = killpg(Pid::from_raw(kernel_pid), Signal::SIGINT);
    }
    Ok(())
}

/// Forget context `name` and kill its kernel and all it started, on a thread of its own (a
/// fork bomb takes rounds); answers [`Event::Done`] once they are dead.
pub(crate) fn stop(contexts: &Contexts, name: &str, id: u64, replies: &Replies) -> Result<(), String> {
    let entry = lock(contexts).remove(name).ok_or_else(|| format!("no context {name}"))?;
    let answer = replies.clone();
    let kill = move || {
        if entry.runner_pid > 0 {
            crate::runner::kill_tree(entry.runner_pid);
        }
        answer.send(id, Event::Done);
    };
    if std::thread::Builder::new().spawn(kill.clone()).is_err() {
        kill();
    }
    Ok(())
}

/// Forget context `name` if it is still the kernel of `generation` (its runner ended).
fn forget(contexts: &Contexts, name: &str, generation: u64) {
    let mut table = lock(contexts);
    if table.get(name).is_some_and(|e| e.generation == generation) {
        table.remove(name);
    }
}

fn lock(contexts: &Contexts) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
    contexts.lock().unwrap_or_else(|e| e.into_inner())
}
