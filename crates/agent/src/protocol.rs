//! Messages between the runtime and the agent: newline-delimited JSON, one object per line.
//! Requests carry an `id` that every answer to them repeats, so several commands can run at once
//! and their output can interleave on the one socket.

use serde::{Deserialize, Serialize};

/// A request from the runtime.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Chosen by the runtime, unique on the connection; repeated in every answer.
    pub id: u64,
    /// What to do.
    #[serde(flatten)]
    pub op: Op,
}

/// What the runtime asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// Answer with [`Event::Pong`]: the agent is up.
    Ping,
    /// Start a command. Answered with [`Event::Started`], any number of [`Event::Output`], then
    /// one [`Event::Exit`]; or with one [`Event::Exit`] carrying `spawn_error`.
    Start(StartRequest),
    /// Write to the standard input of a command started with `keep_stdin_open`. Answered with
    /// [`Event::Done`] once handed to the command's writer.
    Stdin {
        /// The id of the command's `start` request.
        command: u64,
        /// Text to write.
        data: String,
    },
    /// Close the standard input of a command (it then reads end of file).
    CloseStdin {
        /// The id of the command's `start` request.
        command: u64,
    },
    /// Send a signal to the command's main process.
    Signal {
        /// The id of the command's `start` request.
        command: u64,
        /// Signal number, e.g. 2 for SIGINT or 15 for SIGTERM.
        signal: i32,
    },
    /// Kill the command and every process it started; its exit then says `killed`.
    Kill {
        /// The id of the command's `start` request.
        command: u64,
    },
}

/// One command to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartRequest {
    /// Program and arguments; `argv[0]` is looked up in `PATH` when it has no slash.
    pub argv: Vec<String>,
    /// Environment added to the agent's own.
    #[serde(default)]
    pub env: Vec<(String, String)>,
    /// Working directory inside the sandbox.
    pub cwd: String,
    /// Kill the command and every process it started after this many milliseconds.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Text written to the command's standard input first.
    #[serde(default)]
    pub stdin: Option<String>,
    /// Keep standard input open for [`Op::Stdin`] until [`Op::CloseStdin`]; otherwise it ends
    /// after `stdin` (or at once).
    #[serde(default)]
    pub keep_stdin_open: bool,
    /// Bytes of stdout plus stderr passed on; the rest is read and dropped.
    pub max_output_bytes: u64,
}

/// An answer from the agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// The request's id.
    pub id: u64,
    /// What happened.
    #[serde(flatten)]
    pub event: Event,
}

/// Which output stream a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// The agent is up.
    Pong,
    /// A command's main process started.
    Started {
        /// Its pid inside the sandbox.
        pid: i32,
    },
    /// A chunk of a command's output, in the order it was written. Chunks never split a UTF-8
    /// sequence; bytes that are not UTF-8 arrive as U+FFFD.
    Output {
        /// Which stream.
        stream: OutputStream,
        /// The text.
        data: String,
    },
    /// A command ended.
    Exit(ExitInfo),
    /// A `stdin`, `close_stdin`, `signal` or `kill` request was carried out.
    Done,
    /// The request could not be carried out.
    Error {
        /// What went wrong.
        message: String,
    },
}

/// The end of one command.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitInfo {
    /// Exit code, when the command exited.
    pub exit_code: Option<i32>,
    /// Signal number, when it was killed.
    pub signal: Option<i32>,
    /// Whether its timeout ended it.
    pub timed_out: bool,
    /// Whether a [`Op::Kill`] ended it.
    pub killed: bool,
    /// Whether output beyond `max_output_bytes` was dropped.
    pub output_truncated: bool,
    /// Bytes of stdout the command wrote (kept or not).
    pub stdout_bytes: u64,
    /// Bytes of stderr the command wrote (kept or not).
    pub stderr_bytes: u64,
    /// Wall-clock time from start to end in milliseconds.
    pub duration_ms: u64,
    /// User CPU time of the command and everything it started, in milliseconds.
    pub user_cpu_ms: u64,
    /// System CPU time of the command and everything it started, in milliseconds.
    pub system_cpu_ms: u64,
    /// Peak resident memory of its largest process, in bytes.
    pub max_rss_bytes: u64,
    /// Why the command could not be started, if it could not (`exit_code` is then 127 or 126).
    pub spawn_error: Option<String>,
}
