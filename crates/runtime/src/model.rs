//! The runtime's typed records: what a sandbox and a command are, independent of how they are
//! asked for (HTTP, CLI) or stored (SQLite).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::egress::policy::NetworkPolicy;

/// Milliseconds since the Unix epoch, the runtime's one clock for records.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Where a sandbox is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SandboxState {
    /// Being started (or resumed); not yet answering.
    Pending,
    /// Its agent answers; commands can run.
    Running,
    /// No process runs; the workspace is kept and a resume starts a fresh agent on it.
    Paused,
    /// Being deleted.
    Stopping,
    /// Deleted or expired; its workspace is gone. Final.
    Terminated,
    /// Could not start, or ended by itself. Final.
    Failed,
}

impl SandboxState {
    /// Every state, for metrics and filters.
    pub const ALL: [SandboxState; 6] = [
        SandboxState::Pending,
        SandboxState::Running,
        SandboxState::Paused,
        SandboxState::Stopping,
        SandboxState::Terminated,
        SandboxState::Failed,
    ];

    /// The name used in the API and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            SandboxState::Pending => "pending",
            SandboxState::Running => "running",
            SandboxState::Paused => "paused",
            SandboxState::Stopping => "stopping",
            SandboxState::Terminated => "terminated",
            SandboxState::Failed => "failed",
        }
    }

    /// The state named `name`, if any.
    pub fn parse(name: &str) -> Option<SandboxState> {
        SandboxState::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// Whether the sandbox is gone for good.
    pub fn is_final(self) -> bool {
        matches!(self, SandboxState::Terminated | SandboxState::Failed)
    }
}

/// A state with why and when it was entered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The state.
    pub state: SandboxState,
    /// A stable, machine-readable cause, e.g. `created`, `paused`, `expired`, `server_restarted`.
    pub reason: String,
    /// A sentence for people.
    pub message: String,
    /// When the state was entered (ms since the epoch).
    pub since_ms: i64,
}

impl Status {
    /// `state` entered now.
    pub fn now(state: SandboxState, reason: &str, message: impl Into<String>) -> Status {
        Status { state, reason: reason.to_owned(), message: message.into(), since_ms: now_ms() }
    }
}

/// Limits of a whole sandbox (all its commands together).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxLimits {
    /// Memory of every process together, in bytes.
    pub memory_bytes: u64,
    /// Processes and threads.
    pub max_pids: u64,
    /// CPU bandwidth in millicores; none for no quota.
    pub cpu_millis: Option<u64>,
    /// Open files per process.
    pub max_open_files: u64,
    /// Largest file a process may write.
    pub max_file_bytes: Option<u64>,
    /// Size of `/tmp` (a tmpfs, lost on pause).
    pub tmp_size_bytes: u64,
}

/// What a new sandbox should be; validated by the front door, checked against the server's
/// maxima by the runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSandbox {
    /// Limits; the server's defaults fill what the caller left out.
    pub limits: SandboxLimits,
    /// Variables set for every command.
    pub env: BTreeMap<String, String>,
    /// Free labels, filterable in listings.
    pub metadata: BTreeMap<String, String>,
    /// Time to live from now; none for no expiry.
    pub ttl: Option<Duration>,
    /// Default working directory of commands.
    pub workdir: String,
    /// What the sandbox may reach on the network.
    pub network: NetworkPolicy,
    /// The template it was made from ([`DEFAULT_TEMPLATE`] unless a front door picked another).
    pub template: String,
    /// The image a client named, kept to report it back (OpenSandbox); Airlock runs every
    /// sandbox on the host's `/usr`.
    pub image: Option<String>,
    /// A program started in the background whenever the sandbox starts or resumes; empty for none.
    pub entrypoint: Vec<String>,
}

/// The template every sandbox uses unless its creator picks another.
pub const DEFAULT_TEMPLATE: &str = "default";

fn default_template() -> String {
    DEFAULT_TEMPLATE.to_owned()
}

/// A sandbox as the runtime and its store know it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxRecord {
    /// Unique id.
    pub id: String,
    /// The API key id that owns it; none on a server without keys.
    pub owner: Option<String>,
    /// Current state.
    pub status: Status,
    /// Creation time (ms since the epoch).
    pub created_ms: i64,
    /// Expiry (ms since the epoch); none for no expiry.
    pub expires_ms: Option<i64>,
    /// Limits.
    pub limits: SandboxLimits,
    /// Variables set for every command.
    pub env: BTreeMap<String, String>,
    /// Free labels.
    pub metadata: BTreeMap<String, String>,
    /// Default working directory of commands.
    pub workdir: String,
    /// Number that picks the sandbox's host uid when the server runs as root.
    pub slot: u32,
    /// Pre-started and not yet claimed: invisible to every caller.
    #[serde(default)]
    pub pooled: bool,
    /// What the sandbox may reach on the network.
    #[serde(default)]
    pub network: NetworkPolicy,
    /// The template it was made from.
    #[serde(default = "default_template")]
    pub template: String,
    /// The image a client named, if any.
    #[serde(default)]
    pub image: Option<String>,
    /// Started in the background whenever the sandbox starts or resumes; empty for none.
    #[serde(default)]
    pub entrypoint: Vec<String>,
    /// Ingress links made before this time (ms since the epoch) are refused.
    #[serde(default)]
    pub links_valid_from_ms: i64,
}

/// What listing returns and how to ask for the next page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// This page's items.
    pub items: Vec<T>,
    /// Pass as `after` for the next page; none on the last page.
    pub next: Option<String>,
}

/// Which sandboxes to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SandboxFilter {
    /// Only these states; empty for all.
    pub states: Vec<SandboxState>,
    /// Only sandboxes whose metadata has every one of these pairs.
    pub metadata: BTreeMap<String, String>,
    /// Page size.
    pub limit: usize,
    /// Start after this sandbox id (from [`Page::next`]).
    pub after: Option<String>,
}

/// A command to run in a sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandSpec {
    /// Program and arguments.
    pub argv: Vec<String>,
    /// Variables added to the sandbox's.
    pub env: BTreeMap<String, String>,
    /// Working directory; the sandbox's when none.
    pub cwd: Option<String>,
    /// Kill the command and its descendants after this long.
    pub timeout: Option<Duration>,
    /// Text written to standard input first.
    pub stdin: Option<String>,
    /// Keep standard input open for later writes (background commands).
    pub keep_stdin_open: bool,
    /// Bytes of stdout plus stderr kept.
    pub max_output_bytes: u64,
}

/// How a command stands or ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandStatus {
    /// Still running.
    Running,
    /// Exited with code 0.
    Ok,
    /// Exited with another code.
    Exited,
    /// Its timeout killed it.
    Timeout,
    /// A kill request ended it.
    Killed,
    /// A signal ended it.
    Signaled,
    /// It could not be started.
    Failed,
    /// Its sandbox stopped (paused, deleted, or the server restarted) before it ended.
    Lost,
}

impl CommandStatus {
    /// Every status, for metrics.
    pub const ALL: [CommandStatus; 8] = [
        CommandStatus::Running,
        CommandStatus::Ok,
        CommandStatus::Exited,
        CommandStatus::Timeout,
        CommandStatus::Killed,
        CommandStatus::Signaled,
        CommandStatus::Failed,
        CommandStatus::Lost,
    ];

    /// The name used in the API and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            CommandStatus::Running => "running",
            CommandStatus::Ok => "ok",
            CommandStatus::Exited => "exited",
            CommandStatus::Timeout => "timeout",
            CommandStatus::Killed => "killed",
            CommandStatus::Signaled => "signaled",
            CommandStatus::Failed => "failed",
            CommandStatus::Lost => "lost",
        }
    }
}

/// Resources a command used, its whole process tree included.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandUsage {
    /// Wall-clock time in milliseconds.
    pub duration_ms: u64,
    /// User CPU time in milliseconds.
    pub user_cpu_ms: u64,
    /// System CPU time in milliseconds.
    pub system_cpu_ms: u64,
    /// Peak resident memory of its largest process, in bytes.
    pub max_rss_bytes: u64,
    /// Bytes written to stdout (kept or not).
    pub stdout_bytes: u64,
    /// Bytes written to stderr (kept or not).
    pub stderr_bytes: u64,
}

/// A command as the runtime and its store know it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandRecord {
    /// Unique id.
    pub id: String,
    /// The sandbox it runs in.
    pub sandbox_id: String,
    /// Program and arguments.
    pub argv: Vec<String>,
    /// Working directory.
    pub cwd: String,
    /// How it stands.
    pub status: CommandStatus,
    /// Exit code, once exited.
    pub exit_code: Option<i32>,
    /// Signal number, when a signal ended it.
    pub signal: Option<i32>,
    /// Whether output beyond the cap was dropped.
    pub output_truncated: bool,
    /// Why it could not start, or was lost.
    pub error: Option<String>,
    /// Start time (ms since the epoch).
    pub started_ms: i64,
    /// End time (ms since the epoch), once ended.
    pub ended_ms: Option<i64>,
    /// What it used; complete once ended.
    pub usage: CommandUsage,
}
