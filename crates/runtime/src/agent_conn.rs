//! The runtime's end of the socket to a sandbox's agent: requests go out as JSON lines, and a
//! reader task routes each answer to whoever waits for that request id.

use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use airlock_agent::protocol::{Event, Op, Request, Response};
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio::sync::mpsc;

/// Longest answer line accepted from an agent; a larger one means the agent is not ours.
const MAX_LINE_BYTES: usize = 16 << 20;

/// Most received descriptors kept while waiting for their answers.
const MAX_UNPAIRED_FDS: usize = 2 * airlock_jail::MAX_PASSED_FDS;

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
    /// Descriptors that came with answers ([`Event::passed_fds`]), by request id, until their
    /// caller takes them.
    sockets: Arc<Mutex<HashMap<u64, Vec<OwnedFd>>>>,
    next_id: AtomicU64,
}

/// Why [`AgentConn::socket`] or [`AgentConn::descriptors`] brought none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocketRefused {
    /// The agent is gone.
    Hangup,
    /// The agent could not make it, for this reason.
    Agent(String),
}

/// An agent's answer lines, read with the descriptors that come with them.
struct AnswerReader {
    half: OwnedReadHalf,
    buf: Vec<u8>,
    /// How much of `buf` is known to hold no newline.
    scanned: usize,
    chunk: Vec<u8>,
    /// Received descriptors not yet paired with their answer, oldest first.
    fds: VecDeque<OwnedFd>,
}

impl AnswerReader {
    fn new(half: OwnedReadHalf) -> AnswerReader {
        AnswerReader { half, buf: Vec::new(), scanned: 0, chunk: vec![0; 64 << 10], fds: VecDeque::new() }
    }

    /// The next line, or `None` once the agent is gone or sends a line too long to be ours.
    async fn next_line(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(at) = self.buf[self.scanned..].iter().position(|&b| b == b'\n') {
                let end = self.scanned + at + 1;
                let rest = self.buf.split_off(end);
                self.scanned = 0;
                return Some(std::mem::replace(&mut self.buf, rest));
            }
            self.scanned = self.buf.len();
            if self.buf.len() > MAX_LINE_BYTES {
                return None;
            }
            let stream = self.half.as_ref();
            let chunk = &mut self.chunk;
            let read = stream
                .async_io(Interest::READABLE, || {
                    airlock_jail::recv_with_fds(stream.as_fd(), chunk).map_err(std::io::Error::from)
                })
                .await;
            match read {
                Ok((0, ..)) | Err(_) => return None,
                Ok((n, fds, _)) => {
                    self.buf.extend_from_slice(&self.chunk[..n]);
                    // More unpaired descriptors than answers could ever claim means a confused
                    // or hostile agent; the excess is closed rather than kept.
                    for fd in fds {
                        if self.fds.len() < MAX_UNPAIRED_FDS {
                            self.fds.push_back(fd);
                        }
                    }
                }
            }
        }
    }
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
            sockets: Arc::default(),
            next_id: AtomicU64::new(1),
        });
        let sockets = Arc::clone(&conn.sockets);
        tokio::spawn(async move {
            let mut answers = AnswerReader::new(reader);
            while let Some(line) = answers.next_line().await {
                let Ok(response) = serde_json::from_slice::<Response>(&line) else {
                    tracing::warn!(line = %String::from_utf8_lossy(&line[..line.len().min(200)]), "unreadable agent answer");
                    continue;
                };
                let mut waiters = waiters.lock().unwrap_or_else(|e| e.into_inner());
                // An answer's descriptors came with the line's first bytes; they are paired
                // with the answer here, before the waiter learns of it.
                let passed: Vec<OwnedFd> =
                    (0..response.event.passed_fds()).map_while(|_| answers.fds.pop_front()).collect();
                let finished = match waiters.get(&response.id) {
                    Some(w) => {
                        if !passed.is_empty() {
                            sockets.lock().unwrap_or_else(|e| e.into_inner()).insert(response.id, passed);
                        }
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
        let streams = matches!(op, Op::Start(_));
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

    /// Send `op` (one of the requests answered with [`Event::Socket`]) and take the socket the
    /// agent made; `Err` carries the agent's reason.
    pub async fn socket(&self, op: Op) -> Result<OwnedFd, SocketRefused> {
        match self.descriptors(op).await? {
            (Event::Socket, mut fds) if fds.len() == 1 => fds.pop().ok_or(SocketRefused::Hangup),
            (other, _) => Err(SocketRefused::Agent(format!("the agent answered {other:?} without a socket"))),
        }
    }

    /// Send `op` and take its answer with the descriptors that came with it; `Err` carries the
    /// agent's reason when it answered [`Event::Error`].
    pub async fn descriptors(&self, op: Op) -> Result<(Event, Vec<OwnedFd>), SocketRefused> {
        let (id, mut answers) = self.open(op).await.map_err(|Hangup| SocketRefused::Hangup)?;
        let answer = answers.recv().await.ok_or(SocketRefused::Hangup)?;
        let fds = self.sockets.lock().unwrap_or_else(|e| e.into_inner()).remove(&id).unwrap_or_default();
        match answer {
            Event::Error { message } => Err(SocketRefused::Agent(message)),
            answer if fds.len() == answer.passed_fds() => Ok((answer, fds)),
            answer => Err(SocketRefused::Agent(format!(
                "the agent answered {answer:?} with {} descriptors instead of {}",
                fds.len(),
                answer.passed_fds()
            ))),
        }
    }

    /// Close the sending side: the agent reads end of file and the sandbox ends.
    pub async fn hang_up(&self) {
        if let Some(mut writer) = self.writer.lock().await.take() {
            let _ = writer.shutdown().await;
        }
    }
}
