//! The request loop's shortcut to an idle kernel: while its kernel is idle and ready, a worker
//! lends the kernel's request pipe to the agent's request loop, which then writes a run's
//! request itself instead of waking the worker first; the worker takes the pipe back and follows
//! the run when its [`Msg::Started`] arrives. This keeps a thread wakeup off the path of every
//! run.

use std::io::Write;
use std::process::ChildStdin;
use std::sync::mpsc;
use std::time::Instant;

use super::request::{check, request_line};
use super::worker::Msg;
use crate::protocol::{Language, RunCodeRequest};

/// A run the request loop handed to the kernel (see [`Feed`]).
pub(crate) struct Started {
    pub(super) id: u64,
    pub(super) request: RunCodeRequest,
    /// The kernel generation the pipe was lent for.
    pub(super) generation: u64,
    pub(super) count: u64,
    pub(super) at: Instant,
}

/// The lent pipe, and what the request loop needs to start a run with it.
#[derive(Default)]
pub(crate) struct Feed {
    /// The idle kernel's request pipe.
    pub(super) idle: Option<ChildStdin>,
    /// The pipe of a run the request loop started, until the worker takes it back.
    pub(super) started: Option<ChildStdin>,
    pub(super) generation: u64,
    pub(super) count: u64,
}

impl Feed {
    /// Whether a run was started and not yet taken over by the worker.
    pub(super) fn has_started(&self) -> bool {
        self.started.is_some()
    }

    /// Hand `request` to the idle kernel if the pipe is lent and the request is valid, telling
    /// the worker on `queue` first (so that its message comes before any output of the run);
    /// otherwise give the request back for the worker.
    pub(super) fn start(
        &mut self,
        queue: &mpsc::Sender<Msg>,
        language: Language,
        id: u64,
        request: RunCodeRequest,
    ) -> Handed {
        if check(language, &request).is_err() || self.idle.is_none() {
            return Handed::ToWorker(Box::new((id, request)));
        }
        let count = self.count + 1;
        let line = request_line(language, &request, count);
        let started = Started { id, request, generation: self.generation, count, at: Instant::now() };
        if queue.send(Msg::Started(Box::new(started))).is_err() {
            return Handed::WorkerGone;
        }
        self.count = count;
        let mut pipe = self.idle.take();
        // A pipe that cannot be written leads to a kernel that is gone: the worker hears of
        // that from its runner's waiter and ends the run.
        if let Some(pipe) = pipe.as_mut() {
            let _ = pipe.write_all(&line);
        }
        self.started = pipe;
        Handed::ToKernel
    }
}

/// Where [`Feed::start`] put a run.
pub(crate) enum Handed {
    /// To the kernel: the worker follows it.
    ToKernel,
    /// Nowhere: the worker is to run it (the kernel is busy or not ready, or the request is one
    /// the worker refuses with its reason).
    ToWorker(Box<(u64, RunCodeRequest)>),
    /// Nowhere: the worker has ended.
    WorkerGone,
}
