//! What happened to one run.

use std::time::Duration;

use serde::Serialize;

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// The payload exited with status 0.
    Ok,
    /// The payload exited with a non-zero status.
    Exited,
    /// The wall-clock limit was reached and the tree was killed.
    Timeout,
    /// The memory limit was reached (the kernel's OOM killer fired inside the cgroup).
    MemoryLimit,
    /// The process limit was reached (a fork failed on the pids limit).
    PidsLimit,
    /// The payload wrote more than the output limit; the excess was dropped.
    OutputLimit,
    /// The CPU-time limit was reached (SIGXCPU/SIGKILL from RLIMIT_CPU).
    CpuTimeLimit,
    /// The payload wrote a file larger than the file-size limit (SIGXFSZ).
    FileSizeLimit,
    /// The payload was killed by a signal not caused by a limit.
    Signaled,
}

/// The outcome of a run that started.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// How the run ended. When several limits were hit, the most specific cause wins:
    /// memory, then pids, then timeout, then output.
    pub status: Status,
    /// The payload's exit status when it exited.
    pub exit_code: Option<i32>,
    /// The signal that ended the payload, when one did.
    pub signal: Option<i32>,
    /// Whether the wall-clock limit fired.
    pub timed_out: bool,
    /// Resource usage of the whole tree.
    pub usage: Usage,
    /// The protections that were in force.
    pub applied: Applied,
}

/// Resource usage of the whole process tree.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Usage {
    /// Wall-clock time from start to the end of the tree.
    #[serde(serialize_with = "millis")]
    pub wall: Duration,
    /// User CPU time.
    #[serde(serialize_with = "millis")]
    pub user_cpu: Duration,
    /// Kernel CPU time.
    #[serde(serialize_with = "millis")]
    pub system_cpu: Duration,
    /// Peak memory in bytes (cgroup peak when a cgroup was used, else the largest RSS).
    pub peak_memory_bytes: u64,
    /// Bytes read from storage.
    pub io_read_bytes: u64,
    /// Bytes written to storage.
    pub io_write_bytes: u64,
    /// Bytes the payload wrote to stdout, kept or not.
    pub stdout_bytes: u64,
    /// Bytes the payload wrote to stderr, kept or not.
    pub stderr_bytes: u64,
    /// Whether output was dropped because of the output limit.
    pub output_truncated: bool,
}

/// Protections that were in force during a run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Applied {
    /// The seccomp filter was installed.
    pub seccomp: bool,
    /// The landlock ABI version enforced, if any.
    pub landlock_abi: Option<u32>,
    /// The cgroup version that enforced limits, if a cgroup was used.
    pub cgroup: Option<crate::cgroup::CgroupVersion>,
    /// The host uid the sandbox user mapped to.
    pub host_uid: u32,
    /// Built-in limits left out because this caller could make no cgroup
    /// ([`crate::Limits::builtin`]).
    #[serde(skip_serializing_if = "crate::spec::BuiltinLimits::is_empty")]
    pub left_out: crate::spec::BuiltinLimits,
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}
