//! Messages between the runtime and the agent: newline-delimited JSON, one object per line.
//! Requests carry an `id` that the answer repeats, so several commands can run at once.

use serde::{Deserialize, Serialize};

/// A request from the runtime.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Chosen by the runtime; repeated in the answer.
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
    /// Run a command to its end and answer with [`Event::Exit`].
    Exec(ExecRequest),
}

/// One command to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecRequest {
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
    /// Bytes for the command's standard input (then end of file); none means end of file at once.
    #[serde(default)]
    pub stdin: Option<String>,
    /// Bytes of stdout plus stderr kept; the rest is read and dropped.
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

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// The agent is up.
    Pong,
    /// A command ended.
    Exit(ExecResult),
    /// The request could not be carried out.
    Error {
        /// What went wrong.
        message: String,
    },
}

/// The end of one command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecResult {
    /// Exit code, when the command exited.
    pub exit_code: Option<i32>,
    /// Signal number, when it was killed.
    pub signal: Option<i32>,
    /// Whether its timeout ended it.
    pub timed_out: bool,
    /// Kept standard output (lossy UTF-8).
    pub stdout: String,
    /// Kept standard error (lossy UTF-8).
    pub stderr: String,
    /// Whether output beyond `max_output_bytes` was dropped.
    pub output_truncated: bool,
    /// Wall-clock time from start to end in milliseconds.
    pub duration_ms: u64,
    /// Why the command could not be started, if it could not (`exit_code` is then 127 or 126).
    pub spawn_error: Option<String>,
}
