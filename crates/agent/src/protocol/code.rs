//! Messages about code contexts: stateful interpreters (kernels) that the agent keeps running in
//! the sandbox, and how a run treats its code.

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
