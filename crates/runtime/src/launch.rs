//! Starting a sandbox: its directory on the host, the engine spec, and the `airlock launch`
//! process that supervises it (the server is multi-threaded and cannot make a user namespace
//! itself), with the agent's socket on the launcher's standard input.

use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use airlock_agent::protocol::{Event, Op};
use airlock_jail::{
    BindMount, BuiltinLimits, HostIdentity, Limits, NetworkMode, Protections, SandboxSpec, Stdin, Workspace,
};
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::sync::watch;

use crate::agent_conn::AgentConn;
use crate::egress::policy::Mode;
use crate::error::RuntimeError;
use crate::model::SandboxRecord;

/// Where the agent binary appears inside every sandbox.
const AGENT_PATH: &str = "/.airlock/airlock";

/// How long a new sandbox may take to answer its first ping.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// A sandbox's directory on the host: `<data>/sandboxes/<id>`.
pub fn sandbox_dir(data_dir: &Path, id: &str) -> PathBuf {
    data_dir.join("sandboxes").join(id)
}

/// The host directory bound at `/workspace`.
pub fn workspace_dir(data_dir: &Path, id: &str) -> PathBuf {
    sandbox_dir(data_dir, id).join("workspace")
}

/// How a launcher ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchEnd {
    /// Engine status of the sandbox (`ok`, `memory_limit`, ...) or the start error's code.
    pub status: String,
    /// A sentence for people.
    pub message: String,
    /// What to do about it, when the engine said.
    pub hint: Option<String>,
}

/// A started sandbox: its agent connection and the launcher's end.
pub struct Launched {
    /// The agent.
    pub conn: Arc<AgentConn>,
    /// Becomes `Some` when the launcher has exited.
    pub ended: watch::Receiver<Option<LaunchEnd>>,
    /// The launcher's pid, to kill it if it does not end by itself.
    pub launcher_pid: Option<u32>,
}

/// What the launcher needs besides the record.
pub struct LaunchContext<'a> {
    /// The data directory.
    pub data_dir: &'a Path,
    /// The `airlock` binary, bound into the sandbox as its agent.
    pub airlock_exe: &'a Path,
    /// Protections from the server's configuration.
    pub protections: &'a Protections,
}

/// Make the sandbox's directory and workspace (owned by its host uid), if missing.
pub fn prepare_dirs(data_dir: &Path, record: &SandboxRecord) -> Result<(), RuntimeError> {
    let identity = HostIdentity::for_caller(record.slot);
    let dir = sandbox_dir(data_dir, &record.id);
    // Traversable by the sandbox's uid, which resolves the bind source; not listable.
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o711)
        .create(&dir)
        .map_err(|e| RuntimeError::io(format!("create {}", dir.display()), e))?;
    let workspace = workspace_dir(data_dir, &record.id);
    match std::fs::DirBuilder::new().mode(0o755).create(&workspace) {
        Ok(()) => {
            if nix::unistd::geteuid().is_root() {
                std::os::unix::fs::chown(&workspace, Some(identity.uid), Some(identity.gid))
                    .map_err(|e| RuntimeError::io(format!("chown {}", workspace.display()), e))?;
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(RuntimeError::io(format!("create {}", workspace.display()), e)),
    }
}

fn spec_for(record: &SandboxRecord, ctx: &LaunchContext<'_>) -> SandboxSpec {
    let l = &record.limits;
    let mut env: Vec<(String, String)> = vec![
        ("PATH".into(), airlock_jail::DEFAULT_PATH.into()),
        ("HOME".into(), "/workspace".into()),
        ("LANG".into(), "C.UTF-8".into()),
    ];
    let host_network = record.network.mode == Mode::Host;
    if !host_network {
        // Every process of the sandbox inherits them from the agent; the proxy answers even
        // under `none` (with a refusal that names the policy), and a policy may change later.
        env.extend(crate::egress::proxy_env());
    }
    SandboxSpec {
        argv: vec![AGENT_PATH.into(), "agent".into()],
        env,
        workdir: "/workspace".into(),
        workspace: Workspace::Host { path: workspace_dir(ctx.data_dir, &record.id) },
        binds: vec![BindMount {
            source: ctx.airlock_exe.to_path_buf(),
            destination: AGENT_PATH.into(),
            readonly: true,
        }],
        network: if host_network { NetworkMode::Host } else { NetworkMode::None },
        limits: Limits {
            wall_time: None,
            cpu_time: None,
            memory_bytes: Some(l.memory_bytes),
            max_pids: Some(l.max_pids),
            cpu_millis: l.cpu_millis,
            cpu_shares: None,
            // Only the agent's own log lines go to the launcher; commands' output travels on the
            // socket, capped per command.
            max_output_bytes: Some(1 << 20),
            max_file_bytes: l.max_file_bytes,
            max_open_files: Some(l.max_open_files),
            tmp_size_bytes: l.tmp_size_bytes,
            builtin: BuiltinLimits::default(),
        },
        protections: *ctx.protections,
        identity: HostIdentity::for_caller(record.slot),
        stdin: Stdin::Null,
        hostname: "airlock".into(),
    }
}

/// What `airlock launch` prints when it ends.
#[derive(Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
enum LaunchReport {
    Ended { outcome: serde_json::Value },
    Failed { code: String, message: String, hint: String },
}

/// Start the sandbox of `record` and wait until its agent answers.
pub async fn launch(record: &SandboxRecord, ctx: &LaunchContext<'_>) -> Result<Launched, RuntimeError> {
    prepare_dirs(ctx.data_dir, record)?;
    let spec_path = sandbox_dir(ctx.data_dir, &record.id).join("spec.json");
    let spec =
        serde_json::to_vec(&spec_for(record, ctx)).map_err(|e| RuntimeError::io("encode spec", e.into()))?;
    std::fs::write(&spec_path, spec)
        .map_err(|e| RuntimeError::io(format!("write {}", spec_path.display()), e))?;
    let _ = std::fs::set_permissions(&spec_path, std::fs::Permissions::from_mode(0o600));

    let (ours, theirs) = std::os::unix::net::UnixStream::pair()
        .map_err(|e| RuntimeError::io("create the agent's socket pair", e))?;
    let mut child = tokio::process::Command::new(ctx.airlock_exe)
        .arg("launch")
        .arg("--spec")
        .arg(&spec_path)
        .stdin(Stdio::from(OwnedFd::from(theirs)))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_clear()
        .spawn()
        .map_err(|e| RuntimeError::io(format!("start {}", ctx.airlock_exe.display()), e))?;
    let launcher_pid = child.id();
    ours.set_nonblocking(true).map_err(|e| RuntimeError::io("set up the agent's socket", e))?;
    let stream = tokio::net::UnixStream::from_std(ours)
        .map_err(|e| RuntimeError::io("set up the agent's socket", e))?;
    let conn = AgentConn::new(stream);

    let (ended_tx, ended) = watch::channel(None);
    let mut stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let id = record.id.clone();
    tokio::spawn(async move {
        if let Some(stderr) = stderr {
            let id = id.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    tracing::debug!(sandbox = %id, "{line}");
                }
            });
        }
        let mut report = String::new();
        if let Some(out) = stdout.as_mut() {
            let _ = out.take(64 << 10).read_to_string(&mut report).await;
        }
        let status = child.wait().await;
        let end = match serde_json::from_str::<LaunchReport>(report.trim()) {
            Ok(LaunchReport::Ended { outcome }) => {
                let status = outcome["status"].as_str().unwrap_or("ended").to_owned();
                LaunchEnd { message: format!("the sandbox ended ({status})"), status, hint: None }
            }
            Ok(LaunchReport::Failed { code, message, hint }) => {
                LaunchEnd { status: code, message, hint: Some(hint) }
            }
            Err(_) => LaunchEnd {
                status: "launcher_died".to_owned(),
                message: format!("the sandbox's launcher ended without a report ({status:?})"),
                hint: None,
            },
        };
        let _ = ended_tx.send(Some(end));
    });

    let launched = Launched { conn, ended, launcher_pid };
    match tokio::time::timeout(START_TIMEOUT, launched.conn.call(Op::Ping)).await {
        Ok(Ok(Event::Pong)) => Ok(launched),
        outcome => {
            let mut ended = launched.ended.clone();
            launched.conn.hang_up().await;
            if outcome.is_err() {
                kill_launcher(launched.launcher_pid);
            }
            let end = ended.wait_for(Option::is_some).await.ok().and_then(|e| e.clone());
            let (engine_code, message, hint) = match end {
                Some(end) => (Some(end.status), end.message, end.hint),
                None => (None, "the sandbox did not answer".to_owned(), None),
            };
            Err(RuntimeError::StartFailed { id: record.id.clone(), engine_code, message, hint })
        }
    }
}

/// Kill a launcher that did not end when its agent was hung up on. The engine's init dies with
/// it (its parent-death signal), and with init every process of the sandbox.
pub fn kill_launcher(pid: Option<u32>) {
    if let Some(pid) = pid {
        let _ =
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
    }
}
