//! The runtime's end of the socket to a sandbox's agent: requests go out as JSON lines, and a
//! reader task routes each answer to whoever waits for that request id.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use airlock_agent::protocol::{Event, Op, Request, Response};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::UnixStream;
use tokio::sync::mpsc;

/// Longest answer line accepted from an agent; a larger one means the agent is not ours.
const MAX_LINE_BYTES: usize = 16 << 20;

struct Waiter {
    events: mpsc::UnboundedSender<Event>,
    /// A command's or a code run's stream lasts until its last event; any other request ends
    /// with its first answer.
    streams: bool,
}

type Waiters = Arc<Mutex<HashMap<u64, Waiter>>>;

/// A connection to one agent.
pub struct AgentConn {
    writer: tokio::sync::Mutex<Option<OwnedWriteHalf>>,
    waiters: Waiters,
    next_id: AtomicU64,
}

/// Why a request got no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hangup;

impl AgentConn {
    /// Start reading answers from `stream`.
    pub fn new(stream: UnixStream) -> Arc<AgentConn> {
        let (reader, writer) = stream.into_split();
        let waiters: Waiters = Arc::default();
        let conn = Arc::new(AgentConn {
            writer: tokio::sync::Mutex::new(Some(writer)),
            waiters: Arc::clone(&waiters),
            next_id: AtomicU64::new(1),
        });
        tokio::spawn(async move {
            let mut lines = BufReader::new(reader);
            let mut line = Vec::new();
            loop {
                line.clear();
                match (&mut lines).take(MAX_LINE_BYTES as u64).read_until(b'\n', &mut line).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                let Ok(response) = serde_json::from_slice::<Response>(&line) else {
                    tracing::warn!(line = %String::from_utf8_lossy(&line[..line.len().min(200)]), "unreadable agent answer");
                    continue;
                };
                let mut waiters = waiters.lock().unwrap_or_else(|e| e.into_inner());
                let finished = match waiters.get(&response.id) {
                    Some(w) => {
                        let last = !w.streams || response.event.ends_stream();
                        let _ = w.events.send(response.event);
                        last
                    }
                    None => false,
                };
                if finished {
                    waiters.remove(&response.id);
                }
            }
            // Dropping the senders tells every waiter that no answer will come.
            waiters.lock().unwrap_or_else(|e| e.into_inner()).clear();
        });
        conn
    }

    /// Send `op` and return its id and the stream of its answers.
    pub async fn open(&self, op: Op) -> Result<(u64, mpsc::UnboundedReceiver<Event>), Hangup> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let streams = matches!(op, Op::Start(_) | Op::RunCode(_));
        let (tx, rx) = mpsc::unbounded_channel();
        self.waiters.lock().unwrap_or_else(|e| e.into_inner()).insert(id, Waiter { events: tx, streams });
        let mut line = serde_json::to_vec(&Request { id, op }).map_err(|_| Hangup)?;
        line.push(b'\n');
        let mut writer = self.writer.lock().await;
        let sent = match writer.as_mut() {
            Some(w) => w.write_all(&line).await.is_ok(),
            None => false,
        };
        if !sent {
            self.waiters.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
            return Err(Hangup);
        }
        Ok((id, rx))
    }

    /// Send `op` and wait for its one answer.
    pub async fn call(&self, op: Op) -> Result<Event, Hangup> {
        let (_, mut answers) = self.open(op).await?;
        answers.recv().await.ok_or(Hangup)
    }

    /// Close the sending side: the agent reads end of file and the sandbox ends.
    pub async fn hang_up(&self) {
        if let Some(mut writer) = self.writer.lock().await.take() {
            let _ = writer.shutdown().await;
        }
    }
}
