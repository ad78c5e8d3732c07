//! The result document `airlock run` prints: capsule-run's `ExecutionResponse`, with Airlock's
//! extra facts (`outcome`, `isolation`) in fields capsule-run clients ignore.

use airlock_runtime::egress::record::Denial;
use std::time::SystemTime;

use airlock_jail::{Applied, Collector, Limits, Outcome, Status};
use serde::Serialize;
use serde_json::{json, Value};

use crate::error::RunError;

/// The JSON result of one run.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The run's id.
    pub execution_id: String,
    /// `success`, `error`, `timeout` or `killed`.
    pub status: &'static str,
    /// The payload's exit code when it exited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Captured stdout (lossy UTF-8).
    pub stdout: String,
    /// Captured stderr (lossy UTF-8).
    pub stderr: String,
    /// Resource usage.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Metrics>,
    /// Start and end times, RFC 3339.
    pub timestamps: Timestamps,
    /// What went wrong, when something did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
    /// Airlock's own outcome name (`ok`, `exited`, `timeout`, `memory_limit`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Status>,
    /// Protections that were in force.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub isolation: Option<Applied>,
    /// Built-in limits this host could not enforce.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Connections the egress proxy refused (runs with `--allow`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub network_denials: Vec<Denial>,
}

/// capsule-run's metrics block plus output counters.
#[derive(Debug, Serialize)]
pub struct Metrics {
    /// Wall-clock time.
    pub wall_time_ms: u64,
    /// User plus kernel CPU time.
    pub cpu_time_ms: u64,
    /// User CPU time.
    pub user_time_ms: u64,
    /// Kernel CPU time.
    pub kernel_time_ms: u64,
    /// Peak memory of the tree.
    pub max_memory_bytes: u64,
    /// Bytes read from storage.
    pub io_bytes_read: u64,
    /// Bytes written to storage.
    pub io_bytes_written: u64,
    /// Bytes written to stdout, kept or not.
    pub stdout_bytes: u64,
    /// Bytes written to stderr, kept or not.
    pub stderr_bytes: u64,
    /// Whether output beyond the limit was dropped.
    pub output_truncated: bool,
}

/// Start and end of the run.
#[derive(Debug, Serialize)]
pub struct Timestamps {
    /// When the run started.
    pub started: String,
    /// When it ended.
    pub completed: String,
}

/// The error block.
#[derive(Debug, Serialize)]
pub struct ErrorBody {
    /// E1xxx–E5xxx.
    pub code: &'static str,
    /// What happened, naming the input.
    pub message: String,
    /// Structured facts, including a `hint`.
    pub details: Value,
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

fn signal_name(sig: i32) -> String {
    nix::sys::signal::Signal::try_from(sig)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("signal {sig}"))
}

impl Report {
    /// The report of a run that started.
    pub fn from_outcome(
        id: String,
        outcome: &Outcome,
        output: &Collector,
        started: SystemTime,
        completed: SystemTime,
        limits: &Limits,
    ) -> Report {
        let u = &outcome.usage;
        let timeout_ms = limits.wall_time.map(|d| d.as_millis() as u64);
        let error = outcome_error(outcome, timeout_ms, limits.max_output_bytes);
        let status = match outcome.status {
            Status::Ok | Status::Exited => "success",
            Status::Timeout => "timeout",
            Status::OutputLimit | Status::PidsLimit | Status::MemoryLimit if outcome.signal.is_none() => {
                "error"
            }
            _ => "killed",
        };
        Report {
            execution_id: id,
            status,
            exit_code: outcome.exit_code,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            metrics: Some(Metrics {
                wall_time_ms: u.wall.as_millis() as u64,
                cpu_time_ms: (u.user_cpu + u.system_cpu).as_millis() as u64,
                user_time_ms: u.user_cpu.as_millis() as u64,
                kernel_time_ms: u.system_cpu.as_millis() as u64,
                max_memory_bytes: u.peak_memory_bytes,
                io_bytes_read: u.io_read_bytes,
                io_bytes_written: u.io_write_bytes,
                stdout_bytes: u.stdout_bytes,
                stderr_bytes: u.stderr_bytes,
                output_truncated: u.output_truncated,
            }),
            timestamps: Timestamps { started: rfc3339(started), completed: rfc3339(completed) },
            error,
            outcome: Some(outcome.status),
            isolation: Some(outcome.applied.clone()),
            warnings: Vec::new(),
            network_denials: Vec::new(),
        }
    }

    /// The report of a run that could not start.
    pub fn from_error(id: String, err: &RunError, started: SystemTime) -> Report {
        let mut details = err.details();
        details["hint"] = json!(err.hint());
        Report {
            execution_id: id,
            status: "error",
            exit_code: None,
            stdout: String::new(),
            stderr: String::new(),
            metrics: None,
            timestamps: Timestamps { started: rfc3339(started), completed: rfc3339(SystemTime::now()) },
            error: Some(ErrorBody { code: err.code(), message: err.to_string(), details }),
            outcome: None,
            isolation: None,
            warnings: Vec::new(),
            network_denials: Vec::new(),
        }
    }
}

/// The error block for a run that ended because of a limit or a signal.
fn outcome_error(o: &Outcome, timeout_ms: Option<u64>, max_output: Option<u64>) -> Option<ErrorBody> {
    let wall = o.usage.wall.as_millis() as u64;
    let (code, message, details) = match o.status {
        Status::Ok | Status::Exited => return None,
        Status::Timeout => (
            "E3001",
            format!("command exceeded timeout limit of {}ms", timeout_ms.unwrap_or(0)),
            json!({ "timeout_ms": timeout_ms, "elapsed_ms": wall }),
        ),
        Status::MemoryLimit => (
            "E4001",
            "memory limit exceeded: the kernel killed the largest process of the sandbox".to_string(),
            json!({ "max_memory_bytes": o.usage.peak_memory_bytes }),
        ),
        Status::PidsLimit => (
            "E4003",
            "too many processes: the sandbox hit its process limit".to_string(),
            json!({ "timed_out": o.timed_out }),
        ),
        Status::OutputLimit => (
            "E4004",
            format!("output limit of {} bytes exceeded; the rest was dropped", max_output.unwrap_or(0)),
            json!({ "stdout_bytes": o.usage.stdout_bytes, "stderr_bytes": o.usage.stderr_bytes }),
        ),
        Status::CpuTimeLimit | Status::FileSizeLimit | Status::Signaled => {
            let sig = o.signal.unwrap_or(libc::SIGKILL);
            let reason = match o.status {
                Status::CpuTimeLimit => "cpu_time_limit",
                Status::FileSizeLimit => "file_size_limit",
                _ => "signal",
            };
            (
                "E3003",
                format!("process killed by signal {sig}"),
                json!({ "signal": sig, "signal_name": signal_name(sig), "reason": reason }),
            )
        }
    };
    Some(ErrorBody { code, message, details })
}

/// Exit status of `airlock run` for a run that started: the payload's own, 124 on timeout,
/// 128+N when killed by signal N.
pub fn exit_status(o: &Outcome) -> i32 {
    if o.status == Status::Timeout {
        return 124;
    }
    match (o.exit_code, o.signal) {
        (Some(code), _) => code,
        (None, Some(sig)) => 128 + sig,
        (None, None) => 1,
    }
}
