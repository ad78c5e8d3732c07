//! The runtime's side of a code context's kernel: the agent starts the kernel and hands over
//! its pipes (see the agent's `context` module for the kernel protocol), and the runtime drives
//! each run through them itself, with no process in between: it writes the run's request,
//! passes the output and results on as they come, interrupts the kernel at the run's timeout
//! (through the agent, which sends the signal) and has it restarted when it ignores that.

mod control;
mod link;
mod usage;

use airlock_agent::protocol::{CodeMode, Language};
use serde_json::{json, Value};

pub(crate) use link::{Fate, KernelLink, RunSignal};

/// A run's request, as the runtime writes it to a kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RunCodeRequest {
    /// The context's name.
    pub(crate) context: String,
    /// The code.
    pub(crate) code: String,
    /// Cell, handler or script.
    pub(crate) mode: CodeMode,
    /// The handler's argument, in handler mode.
    pub(crate) event: Option<Value>,
    /// Interrupt the run after this many milliseconds.
    pub(crate) timeout_ms: Option<u64>,
    /// Bytes of stdout plus stderr passed on; the rest is read and dropped.
    pub(crate) max_output_bytes: u64,
    /// Script mode: the program's standard input.
    pub(crate) stdin: Option<String>,
    /// Script mode: variables set for the program.
    pub(crate) env: Vec<(String, String)>,
    /// Script mode: the file the code was read from, for `sys.argv` and tracebacks.
    pub(crate) filename: Option<String>,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum RunStatus {
    /// The code ran to its end.
    #[default]
    Ok,
    /// The code raised an error.
    Error,
    /// An interrupt request stopped it.
    Interrupted,
    /// Its timeout stopped it.
    Timeout,
    /// The kernel ended during the run (the code exited it, or it was killed or stopped).
    ContextLost,
}

/// The end of one run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct CodeEnd {
    /// How it ended.
    pub(crate) status: RunStatus,
    /// The run's number in its context, from 1; it starts again after a restart.
    pub(crate) execution_count: u64,
    /// Bash: the exit status of the cell's last command; script mode: the program's.
    pub(crate) exit_code: Option<i32>,
    /// Whether the context was restarted at the end of this run (it ignored the interrupt, or
    /// its kernel ended): variables and other state are gone.
    pub(crate) restarted: bool,
    /// Why the context was restarted or lost, when it was.
    pub(crate) message: Option<String>,
    /// Whether output beyond `max_output_bytes` was dropped.
    pub(crate) output_truncated: bool,
    /// Bytes of stdout written during the run (kept or not).
    pub(crate) stdout_bytes: u64,
    /// Bytes of stderr written during the run (kept or not).
    pub(crate) stderr_bytes: u64,
    /// Wall-clock time of the run in milliseconds.
    pub(crate) duration_ms: u64,
    /// CPU time the kernel and the processes it waited for used since the previous run ended,
    /// in milliseconds.
    pub(crate) cpu_ms: u64,
    /// Peak resident memory of the kernel process so far, in bytes.
    pub(crate) max_rss_bytes: u64,
}

/// A run's request as a kernel of `language` reads it.
fn request_line(language: Language, request: &RunCodeRequest, count: u64) -> Vec<u8> {
    match language {
        Language::Bash => {
            let mut bytes = request.code.clone().into_bytes();
            bytes.push(0);
            bytes
        }
        Language::Python | Language::Javascript => {
            let env: serde_json::Map<String, Value> =
                request.env.iter().map(|(k, v)| (k.clone(), Value::from(v.as_str()))).collect();
            let mut bytes = serde_json::to_vec(&json!({
                "code": request.code,
                "mode": request.mode,
                "execution_count": count,
                "event": request.event,
                "stdin": request.stdin,
                "env": env,
                "filename": request.filename,
            }))
            .unwrap_or_default();
            bytes.push(b'\n');
            bytes
        }
    }
}
