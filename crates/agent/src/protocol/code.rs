//! Messages about code contexts: stateful interpreters (kernels) that the agent keeps running in
//! the sandbox, and the runs of code in them.

use serde::{Deserialize, Serialize};

/// The language of a code context, which picks its kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    /// `python3`, with notebook semantics.
    Python,
    /// `node`, with REPL semantics.
    Javascript,
    /// `bash`, one shell for the context's life.
    Bash,
}

impl Language {
    /// Every language, in a fixed order.
    pub const ALL: [Language; 3] = [Language::Python, Language::Javascript, Language::Bash];

    /// The name used in requests and answers.
    pub fn as_str(self) -> &'static str {
        match self {
            Language::Python => "python",
            Language::Javascript => "javascript",
            Language::Bash => "bash",
        }
    }
}

/// Start a code context's kernel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContextStartRequest {
    /// The context's name, chosen by the runtime; unique in the sandbox.
    pub context: String,
    /// Which kernel.
    pub language: Language,
    /// Working directory of the kernel.
    pub cwd: String,
    /// Environment added to the agent's own.
    #[serde(default)]
    pub env: Vec<(String, String)>,
}

/// How a run treats its code.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CodeMode {
    /// Like a notebook cell: in the context's state, and the value of the last expression
    /// comes back.
    #[default]
    Cell,
    /// Like a serverless function: the code, in a fresh namespace, defines `handler(event)`
    /// (Python) or exports a handler (JavaScript), which is called with `event`; its return
    /// value comes back as `application/json`. Not for Bash.
    Handler,
    /// Like `python3 -c`: the code runs once as a program, with `stdin`, `env` and
    /// `filename`, its traceback on stderr, and ends with an exit code. The kernel is retired
    /// afterwards (started afresh by the next run), and a timeout kills it at once. Python only:
    /// it makes a one-shot run in a pre-started kernel as fast as a warm one.
    Script,
}

/// Run code in a context.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunCodeRequest {
    /// The context's name.
    pub context: String,
    /// The code.
    pub code: String,
    /// Cell or handler.
    #[serde(default)]
    pub mode: CodeMode,
    /// The handler's argument, in handler mode.
    #[serde(default)]
    pub event: Option<serde_json::Value>,
    /// Interrupt the run after this many milliseconds.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Bytes of stdout plus stderr passed on; the rest is read and dropped.
    pub max_output_bytes: u64,
    /// Script mode: the program's standard input.
    #[serde(default)]
    pub stdin: Option<String>,
    /// Script mode: variables set for the program.
    #[serde(default)]
    pub env: Vec<(String, String)>,
    /// Script mode: the file the code was read from, for `sys.argv` and tracebacks.
    #[serde(default)]
    pub filename: Option<String>,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// The code ran to its end.
    #[default]
    Ok,
    /// The code raised an error (a [`crate::protocol::Event::CodeError`] came before the end).
    Error,
    /// An interrupt request stopped it.
    Interrupted,
    /// Its timeout stopped it.
    Timeout,
    /// The kernel ended during the run (the code exited it, or it was killed); the context was
    /// started afresh and its state is gone.
    ContextLost,
}

/// The end of one run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeEnd {
    /// How it ended.
    pub status: RunStatus,
    /// The run's number in its context, from 1; it starts again after a restart.
    pub execution_count: u64,
    /// Bash: the exit status of the cell's last command; script mode: the program's.
    pub exit_code: Option<i32>,
    /// Whether the context was restarted at the end of this run (it ignored the interrupt, or
    /// its kernel ended): variables and other state are gone.
    pub restarted: bool,
    /// Why the context was restarted or lost, when it was.
    pub message: Option<String>,
    /// Whether output beyond `max_output_bytes` was dropped.
    pub output_truncated: bool,
    /// Bytes of stdout written during the run (kept or not).
    pub stdout_bytes: u64,
    /// Bytes of stderr written during the run (kept or not).
    pub stderr_bytes: u64,
    /// Wall-clock time of the run in milliseconds.
    pub duration_ms: u64,
    /// CPU time the kernel and the processes it waited for used during the run, in
    /// milliseconds.
    pub cpu_ms: u64,
    /// Peak resident memory of the kernel process so far, in bytes.
    pub max_rss_bytes: u64,
}
