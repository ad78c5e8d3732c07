//! A command running in a sandbox, as the runtime follows it: every output chunk numbered in
//! order (so a stream can resume after a reconnect), its status, and its end, written to the
//! store.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use airlock_agent::protocol::{Event, ExitInfo, OutputStream};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit};

use crate::agent_conn::AgentConn;
use crate::model::{now_ms, CommandRecord, CommandStatus};
use crate::store::Store;

/// One numbered event of a command. Numbers start at 1 and have no gaps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandEvent {
    /// Text written to stdout.
    Stdout {
        /// Sequence number.
        seq: u64,
        /// The text.
        data: String,
    },
    /// Text written to stderr.
    Stderr {
        /// Sequence number.
        seq: u64,
        /// The text.
        data: String,
    },
    /// The end; always the last event.
    Exit {
        /// Sequence number.
        seq: u64,
        /// The final record.
        record: CommandRecord,
    },
}

impl CommandEvent {
    /// The event's sequence number.
    pub fn seq(&self) -> u64 {
        match self {
            CommandEvent::Stdout { seq, .. }
            | CommandEvent::Stderr { seq, .. }
            | CommandEvent::Exit { seq, .. } => *seq,
        }
    }
}

/// Output read from an offset on, and where the next read starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logs {
    /// Stdout from the asked offset.
    pub stdout: String,
    /// Stderr from the asked offset.
    pub stderr: String,
    /// Byte offset of the end of stdout so far.
    pub stdout_end: usize,
    /// Byte offset of the end of stderr so far.
    pub stderr_end: usize,
}

struct State {
    record: CommandRecord,
    events: Vec<CommandEvent>,
}

/// A command the runtime follows.
pub struct CommandHandle {
    /// The command's id, fixed at creation (also in the record), for lookups without a lock.
    id: String,
    state: Mutex<State>,
    /// The number of events so far; bumped on each one.
    changed: watch::Sender<u64>,
    /// The agent that runs it, and the id of its start request there.
    agent: Arc<AgentConn>,
    agent_id: u64,
}

impl CommandHandle {
    pub(crate) fn new(record: CommandRecord, agent: Arc<AgentConn>, agent_id: u64) -> Arc<CommandHandle> {
        Arc::new(CommandHandle {
            id: record.id.clone(),
            state: Mutex::new(State { record, events: Vec::new() }),
            changed: watch::channel(0).0,
            agent,
            agent_id,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The command's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The record as it stands.
    pub fn record(&self) -> CommandRecord {
        self.lock().record.clone()
    }

    /// Whether it is still running.
    pub fn is_running(&self) -> bool {
        self.lock().record.status == CommandStatus::Running
    }

    /// Events numbered above `after`.
    pub fn events_after(&self, after: u64) -> Vec<CommandEvent> {
        let state = self.lock();
        let start = (after as usize).min(state.events.len());
        state.events[start..].to_vec()
    }

    /// A receiver that changes whenever an event is added.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Output from byte offsets on (rounded up to a character boundary).
    pub fn logs(&self, stdout_from: usize, stderr_from: usize) -> Logs {
        let state = self.lock();
        let (mut out, mut err) = (String::new(), String::new());
        for event in &state.events {
            match event {
                CommandEvent::Stdout { data, .. } => out.push_str(data),
                CommandEvent::Stderr { data, .. } => err.push_str(data),
                CommandEvent::Exit { .. } => {}
            }
        }
        let tail = |text: &str, from: usize| {
            let mut from = from.min(text.len());
            while !text.is_char_boundary(from) {
                from += 1;
            }
            text[from..].to_owned()
        };
        Logs {
            stdout: tail(&out, stdout_from),
            stderr: tail(&err, stderr_from),
            stdout_end: out.len(),
            stderr_end: err.len(),
        }
    }

    /// Wait for the end and return the final record.
    pub async fn wait(&self) -> CommandRecord {
        let mut changes = self.subscribe();
        loop {
            if !self.is_running() {
                return self.record();
            }
            if changes.changed().await.is_err() {
                return self.record();
            }
        }
    }

    pub(crate) fn agent(&self) -> (&Arc<AgentConn>, u64) {
        (&self.agent, self.agent_id)
    }

    fn push(&self, make: impl FnOnce(u64) -> CommandEvent) {
        let count = {
            let mut state = self.lock();
            let seq = state.events.len() as u64 + 1;
            state.events.push(make(seq));
            seq
        };
        self.changed.send_replace(count);
    }

    fn finish(&self, status: CommandStatus, exit: Option<&ExitInfo>, error: Option<String>) -> CommandRecord {
        let record = {
            let mut state = self.lock();
            let r = &mut state.record;
            r.status = status;
            r.ended_ms = Some(now_ms());
            r.error = error;
            if let Some(e) = exit {
                r.exit_code = e.exit_code;
                r.signal = e.signal;
                r.output_truncated = e.output_truncated;
                r.usage.duration_ms = e.duration_ms;
                r.usage.user_cpu_ms = e.user_cpu_ms;
                r.usage.system_cpu_ms = e.system_cpu_ms;
                r.usage.max_rss_bytes = e.max_rss_bytes;
                r.usage.stdout_bytes = e.stdout_bytes;
                r.usage.stderr_bytes = e.stderr_bytes;
            } else {
                r.usage.duration_ms = (now_ms() - r.started_ms).max(0) as u64;
            }
            r.clone()
        };
        self.push(|seq| CommandEvent::Exit { seq, record: record.clone() });
        record
    }
}

/// How a command's exit maps to its status.
fn status_of(exit: &ExitInfo) -> CommandStatus {
    if exit.spawn_error.is_some() && exit.signal.is_none() {
        CommandStatus::Failed
    } else if exit.killed {
        CommandStatus::Killed
    } else if exit.timed_out {
        CommandStatus::Timeout
    } else if exit.signal.is_some() {
        CommandStatus::Signaled
    } else if exit.exit_code == Some(0) {
        CommandStatus::Ok
    } else {
        CommandStatus::Exited
    }
}

/// Ended commands (or code runs) by status: how many, and their wall time in seconds, for
/// metrics.
pub(crate) struct Tally<S>(Mutex<BTreeMap<S, (u64, f64)>>);

impl<S> Default for Tally<S> {
    fn default() -> Self {
        Tally(Mutex::new(BTreeMap::new()))
    }
}

impl<S: Ord + Copy> Tally<S> {
    pub(crate) fn count(&self, status: S, duration_ms: u64) {
        let mut tally = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let entry = tally.entry(status).or_default();
        entry.0 += 1;
        entry.1 += duration_ms as f64 / 1000.0;
    }

    /// (status, count, seconds) for every status seen.
    pub(crate) fn snapshot(&self) -> Vec<(S, u64, f64)> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).iter().map(|(s, (n, t))| (*s, *n, *t)).collect()
    }
}

/// Follow a command's answers from the agent until its end, then store its record. The permit
/// counts it against the server's limit on running commands until then.
pub(crate) async fn follow(
    handle: Arc<CommandHandle>,
    mut answers: mpsc::UnboundedReceiver<Event>,
    store: Arc<Mutex<Store>>,
    tally: Arc<Tally<CommandStatus>>,
    permit: OwnedSemaphorePermit,
) {
    let mut record = None;
    while let Some(event) = answers.recv().await {
        match event {
            Event::Output { stream: OutputStream::Stdout, data } => {
                handle.push(|seq| CommandEvent::Stdout { seq, data })
            }
            Event::Output { stream: OutputStream::Stderr, data } => {
                handle.push(|seq| CommandEvent::Stderr { seq, data })
            }
            Event::Exit(exit) => {
                let error = exit.spawn_error.clone();
                record = Some(handle.finish(status_of(&exit), Some(&exit), error));
                break;
            }
            Event::Error { message } => {
                record = Some(handle.finish(CommandStatus::Failed, None, Some(message)));
                break;
            }
            _ => {}
        }
    }
    drop(permit);
    let record = record.unwrap_or_else(|| {
        handle.finish(
            CommandStatus::Lost,
            None,
            Some("the sandbox stopped before the command ended".to_owned()),
        )
    });
    tally.count(record.status, record.usage.duration_ms);
    let saved = store.lock().unwrap_or_else(|e| e.into_inner()).save_command(&record);
    if let Err(e) = saved {
        tracing::error!(command = %record.id, error = %e, "cannot store a command's end");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exits_map_to_statuses() {
        let exit = |f: &dyn Fn(&mut ExitInfo)| {
            let mut e = ExitInfo::default();
            f(&mut e);
            status_of(&e)
        };
        assert_eq!(exit(&|e| e.exit_code = Some(0)), CommandStatus::Ok);
        assert_eq!(exit(&|e| e.exit_code = Some(3)), CommandStatus::Exited);
        assert_eq!(exit(&|e| e.signal = Some(9)), CommandStatus::Signaled);
        assert_eq!(
            exit(&|e| {
                e.signal = Some(9);
                e.timed_out = true
            }),
            CommandStatus::Timeout
        );
        assert_eq!(
            exit(&|e| {
                e.signal = Some(9);
                e.killed = true
            }),
            CommandStatus::Killed
        );
        assert_eq!(
            exit(&|e| {
                e.exit_code = Some(127);
                e.spawn_error = Some("no such file".into())
            }),
            CommandStatus::Failed
        );
    }
}
