//! The shapes of the native `/v1` API: request bodies (strict: unknown fields are refused) and
//! responses. The OpenAPI document is generated from these types.

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use airlock_runtime::{CommandRecord, SandboxLimits, SandboxRecord};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api_network::NetworkPolicyBody;
use crate::error::ApiError;

/// RFC 3339 time of a record's milliseconds since the epoch.
pub fn rfc3339(ms: i64) -> String {
    let time = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(time).to_string()
}

/// Limits asked for at creation; each one left out takes the server's default.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsRequest {
    /// Memory of every process together, in bytes (swap included).
    pub memory_bytes: Option<u64>,
    /// CPU bandwidth in millicores (1000 = one core).
    pub cpu_millis: Option<u64>,
    /// Processes and threads.
    pub max_pids: Option<u64>,
    /// Open files per process.
    pub max_open_files: Option<u64>,
    /// Largest file a process may write, in bytes.
    pub max_file_bytes: Option<u64>,
    /// Size of `/tmp` in bytes (a tmpfs, emptied on pause).
    pub tmp_size_bytes: Option<u64>,
}

impl LimitsRequest {
    /// These limits over `defaults`, each checked to be above zero.
    pub fn over(&self, defaults: &SandboxLimits) -> Result<SandboxLimits, ApiError> {
        let positive = |field: &str, v: Option<u64>| match v {
            Some(0) => Err(ApiError::invalid(&format!("limits.{field}"), "must be above 0")),
            other => Ok(other),
        };
        Ok(SandboxLimits {
            memory_bytes: positive("memory_bytes", self.memory_bytes)?.unwrap_or(defaults.memory_bytes),
            max_pids: positive("max_pids", self.max_pids)?.unwrap_or(defaults.max_pids),
            cpu_millis: positive("cpu_millis", self.cpu_millis)?.or(defaults.cpu_millis),
            max_open_files: positive("max_open_files", self.max_open_files)?
                .unwrap_or(defaults.max_open_files),
            max_file_bytes: positive("max_file_bytes", self.max_file_bytes)?.or(defaults.max_file_bytes),
            tmp_size_bytes: positive("tmp_size_bytes", self.tmp_size_bytes)?
                .unwrap_or(defaults.tmp_size_bytes),
        })
    }
}

/// `POST /v1/sandboxes`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSandbox {
    /// Resource limits of the whole sandbox.
    #[serde(default)]
    pub limits: LimitsRequest,
    /// Variables set for every command.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Free labels, filterable with `metadata.KEY=VALUE` in listings.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// Time to live in seconds; left out: the server's default; `0`: no expiry (when the server
    /// allows it).
    pub ttl_seconds: Option<u64>,
    /// Default working directory of commands (absolute, inside the sandbox).
    pub workdir: Option<String>,
    /// What the sandbox may reach on the network; loopback only when left out.
    #[serde(default)]
    pub network: NetworkPolicyBody,
}

/// `POST /v1/sandboxes/{id}/renew`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenewSandbox {
    /// New time to live in seconds from now.
    pub ttl_seconds: u64,
}

/// A state, why and since when.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatusView {
    /// `pending`, `running`, `paused`, `stopping`, `terminated` or `failed`.
    pub state: String,
    /// Machine-readable cause: `created`, `started`, `paused`, `resumed`, `deleted`, `expired`,
    /// `start_failed`, `sandbox_exited`, `server_restarted`, `server_stopped`, ...
    pub reason: String,
    /// For people.
    pub message: String,
    /// When the state was entered (RFC 3339).
    pub since: String,
}

/// Limits in force.
#[derive(Debug, Serialize, ToSchema)]
pub struct LimitsView {
    /// Memory of every process together, in bytes.
    pub memory_bytes: u64,
    /// CPU bandwidth in millicores; null for no quota.
    pub cpu_millis: Option<u64>,
    /// Processes and threads.
    pub max_pids: u64,
    /// Open files per process.
    pub max_open_files: u64,
    /// Largest file a process may write; null for no limit.
    pub max_file_bytes: Option<u64>,
    /// Size of `/tmp` in bytes.
    pub tmp_size_bytes: u64,
}

impl From<&SandboxLimits> for LimitsView {
    fn from(l: &SandboxLimits) -> LimitsView {
        LimitsView {
            memory_bytes: l.memory_bytes,
            cpu_millis: l.cpu_millis,
            max_pids: l.max_pids,
            max_open_files: l.max_open_files,
            max_file_bytes: l.max_file_bytes,
            tmp_size_bytes: l.tmp_size_bytes,
        }
    }
}

/// A sandbox.
#[derive(Debug, Serialize, ToSchema)]
pub struct SandboxView {
    /// Id.
    pub id: String,
    /// Current state (same as `status.state`).
    pub state: String,
    /// State with reason, message and transition time.
    pub status: StatusView,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// Expiry (RFC 3339); null for none.
    pub expires_at: Option<String>,
    /// Limits in force.
    pub limits: LimitsView,
    /// Variables set for every command.
    pub env: BTreeMap<String, String>,
    /// Labels.
    pub metadata: BTreeMap<String, String>,
    /// Default working directory of commands.
    pub workdir: String,
    /// Its network policy.
    pub network: NetworkPolicyBody,
    /// The template it was made from.
    pub template: String,
    /// Started in the background whenever the sandbox starts or resumes; empty for none.
    pub entrypoint: Vec<String>,
}

impl From<SandboxRecord> for SandboxView {
    fn from(r: SandboxRecord) -> SandboxView {
        SandboxView {
            state: r.status.state.as_str().to_owned(),
            status: StatusView {
                state: r.status.state.as_str().to_owned(),
                reason: r.status.reason,
                message: r.status.message,
                since: rfc3339(r.status.since_ms),
            },
            created_at: rfc3339(r.created_ms),
            expires_at: r.expires_ms.map(rfc3339),
            limits: LimitsView::from(&r.limits),
            env: r.env,
            metadata: r.metadata,
            workdir: r.workdir,
            network: r.network.into(),
            template: r.template,
            entrypoint: r.entrypoint,
            id: r.id,
        }
    }
}

/// A page of sandboxes.
#[derive(Debug, Serialize, ToSchema)]
pub struct SandboxList {
    /// This page.
    pub items: Vec<SandboxView>,
    /// Pass as `after` for the next page; null on the last one.
    pub next: Option<String>,
}

/// `POST /v1/sandboxes/{id}/commands`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunCommand {
    /// A shell command line, run with `/bin/sh -c`. Give this or `argv`.
    pub command: Option<String>,
    /// Program and arguments, run without a shell. Give this or `command`.
    pub argv: Option<Vec<String>>,
    /// Working directory; the sandbox's `workdir` when left out.
    pub cwd: Option<String>,
    /// Variables added to the sandbox's.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Kill the command and everything it started after this many milliseconds.
    pub timeout_ms: Option<u64>,
    /// Text written to standard input (then end of file, unless `background`).
    pub stdin: Option<String>,
    /// Bytes of stdout plus stderr kept; the server's maximum when left out.
    pub max_output_bytes: Option<u64>,
    /// Answer at once with the command's id (202); standard input stays open for
    /// `POST .../stdin`.
    #[serde(default)]
    pub background: bool,
    /// Answer with a Server-Sent Events stream (also chosen by `Accept: text/event-stream`).
    #[serde(default)]
    pub stream: bool,
}

/// What a command used.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageView {
    /// Wall-clock milliseconds.
    pub duration_ms: u64,
    /// User CPU milliseconds of its whole tree.
    pub user_cpu_ms: u64,
    /// System CPU milliseconds of its whole tree.
    pub system_cpu_ms: u64,
    /// Peak resident memory of its largest process, in bytes.
    pub max_rss_bytes: u64,
    /// Bytes written to stdout, kept or not.
    pub stdout_bytes: u64,
    /// Bytes written to stderr, kept or not.
    pub stderr_bytes: u64,
}

/// A command.
#[derive(Debug, Serialize, ToSchema)]
pub struct CommandView {
    /// Id.
    pub id: String,
    /// The sandbox.
    pub sandbox_id: String,
    /// Program and arguments.
    pub argv: Vec<String>,
    /// Working directory.
    pub cwd: String,
    /// `running`, `ok`, `exited`, `timeout`, `killed`, `signaled`, `failed` or `lost`.
    pub status: String,
    /// Exit code, once exited.
    pub exit_code: Option<i32>,
    /// Signal number, when a signal ended it.
    pub signal: Option<i32>,
    /// Whether output beyond the cap was dropped.
    pub output_truncated: bool,
    /// Why it could not start, or was lost.
    pub error: Option<String>,
    /// Start (RFC 3339).
    pub started_at: String,
    /// End (RFC 3339), once ended.
    pub ended_at: Option<String>,
    /// Resources used; complete once ended.
    pub usage: UsageView,
}

impl From<CommandRecord> for CommandView {
    fn from(r: CommandRecord) -> CommandView {
        CommandView {
            status: r.status.as_str().to_owned(),
            exit_code: r.exit_code,
            signal: r.signal,
            output_truncated: r.output_truncated,
            error: r.error,
            started_at: rfc3339(r.started_ms),
            ended_at: r.ended_ms.map(rfc3339),
            usage: UsageView {
                duration_ms: r.usage.duration_ms,
                user_cpu_ms: r.usage.user_cpu_ms,
                system_cpu_ms: r.usage.system_cpu_ms,
                max_rss_bytes: r.usage.max_rss_bytes,
                stdout_bytes: r.usage.stdout_bytes,
                stderr_bytes: r.usage.stderr_bytes,
            },
            id: r.id,
            sandbox_id: r.sandbox_id,
            argv: r.argv,
            cwd: r.cwd,
        }
    }
}

/// A finished command with its output.
#[derive(Debug, Serialize, ToSchema)]
pub struct CommandResult {
    /// The command.
    #[serde(flatten)]
    pub command: CommandView,
    /// Kept standard output.
    pub stdout: String,
    /// Kept standard error.
    pub stderr: String,
}

/// A list of commands.
#[derive(Debug, Serialize, ToSchema)]
pub struct CommandList {
    /// Oldest first.
    pub items: Vec<CommandView>,
}

/// Output from offsets on.
#[derive(Debug, Serialize, ToSchema)]
pub struct LogsView {
    /// Standard output from `stdout_offset`.
    pub stdout: String,
    /// Standard error from `stderr_offset`.
    pub stderr: String,
    /// Pass as `stdout_offset` next time to get only what is new.
    pub stdout_offset: usize,
    /// Pass as `stderr_offset` next time.
    pub stderr_offset: usize,
    /// The command.
    pub command: CommandView,
}

/// `POST .../stdin`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WriteStdin {
    /// Text to write; may be empty.
    #[serde(default)]
    pub data: String,
    /// Close standard input after writing (the command reads end of file).
    #[serde(default)]
    pub close: bool,
}

/// `POST .../signal`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendSignal {
    /// A name (`SIGTERM`, `TERM`, `INT`, ...) or a number.
    pub signal: serde_json::Value,
}

/// `/health`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok` when ready, `unavailable` otherwise.
    pub status: String,
    /// The process answers.
    pub live: bool,
    /// Requests can be served.
    pub ready: bool,
    /// Why it is not ready, when it is not.
    pub reasons: Vec<String>,
}
