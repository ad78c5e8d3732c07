//! The runtime: every sandbox the server knows, their lifecycle (create, pause, resume, delete,
//! expiry) and the commands that run in them. Each sandbox's lifecycle changes are serialised by
//! its own lock, so a pause and a delete never interleave.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use airlock_agent::protocol::{Event, Op, StartRequest};
use tokio::sync::{watch, Semaphore};

use crate::agent_conn::{AgentConn, SocketRefused};
use crate::code::CodeStatus;
use crate::command::{follow, CommandHandle, Tally};
use crate::config::RuntimeConfig;
use crate::context::ContextTable;
use crate::egress::decide::Protected;
use crate::egress::policy::{Mode, NetworkPolicy};
use crate::egress::resolve::Resolver;
use crate::egress::{Egress, EgressSettings, PROXY_PORT};
use crate::error::RuntimeError;
use crate::launch::{self, LaunchContext, LaunchEnd};
use crate::model::{
    now_ms, CommandRecord, CommandSpec, CommandStatus, CommandUsage, NewSandbox, Page, SandboxFilter,
    SandboxLimits, SandboxRecord, SandboxState, Status, DEFAULT_TEMPLATE,
};
use crate::store::Store;

/// How long a stopping sandbox may take to end by itself before its launcher is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// How long the pool filler waits after a sandbox failed to start, at first and at most.
const POOL_RETRY_MIN: Duration = Duration::from_secs(5);
const POOL_RETRY_MAX: Duration = Duration::from_secs(300);

/// Finished commands kept in memory per sandbox for logs and streams; older ones are only in
/// the store (their record, not their output).
const KEPT_FINISHED_COMMANDS: usize = 100;

/// The running part of a sandbox.
struct Live {
    conn: Arc<AgentConn>,
    ended: watch::Receiver<Option<LaunchEnd>>,
    launcher_pid: Option<u32>,
    /// Set before the runtime stops the sandbox, so its end is not taken for a failure.
    stopping: Arc<AtomicBool>,
    /// Its code contexts, which live as long as its agent.
    contexts: Arc<ContextTable>,
}

pub(crate) struct Sandbox {
    pub(crate) record: Mutex<SandboxRecord>,
    lifecycle: tokio::sync::Mutex<()>,
    live: Mutex<Option<Live>>,
    commands: Mutex<Vec<Arc<CommandHandle>>>,
    /// Its egress policy, denials and proxy; kept across pause and resume.
    pub(crate) egress: Arc<Egress>,
}

impl Sandbox {
    fn new(record: SandboxRecord, settings: &Arc<EgressSettings>) -> Sandbox {
        let egress = Egress::new(record.id.clone(), record.network.clone(), Arc::clone(settings));
        Sandbox {
            record: Mutex::new(record),
            lifecycle: tokio::sync::Mutex::new(()),
            live: Mutex::new(None),
            commands: Mutex::new(Vec::new()),
            egress,
        }
    }

    pub(crate) fn record(&self) -> SandboxRecord {
        self.record.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn state(&self) -> SandboxState {
        self.record.lock().unwrap_or_else(|e| e.into_inner()).status.state
    }

    /// Its record, agent and code contexts, while it runs.
    fn live_parts(&self) -> Option<(SandboxRecord, Arc<AgentConn>, Arc<ContextTable>)> {
        let live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        let (conn, contexts) = live.as_ref().map(|l| (Arc::clone(&l.conn), Arc::clone(&l.contexts)))?;
        drop(live);
        Some((self.record(), conn, contexts))
    }

    fn conn(&self) -> Option<Arc<AgentConn>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner()).as_ref().map(|l| Arc::clone(&l.conn))
    }
}

struct Inner {
    config: RuntimeConfig,
    store: Arc<Mutex<Store>>,
    sandboxes: Mutex<BTreeMap<String, Arc<Sandbox>>>,
    command_slots: Arc<Semaphore>,
    /// Pre-started sandboxes with the default limits, ready to be claimed.
    pool: Mutex<Vec<Arc<Sandbox>>>,
    /// Wakes the pool filler after a claim.
    pool_claimed: Arc<tokio::sync::Notify>,
    /// Ended commands by status.
    tally: Arc<Tally<CommandStatus>>,
    /// Ended runs of code in contexts by status.
    code_tally: Arc<Tally<CodeStatus>>,
    /// What every sandbox's egress proxy shares.
    egress: Arc<EgressSettings>,
    /// Keys the per-sandbox access tokens ([`Runtime::sandbox_token`]).
    token_secret: String,
    /// Keys the signatures of ingress links.
    link_secret: String,
}

/// Counts for metrics and health.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuntimeStats {
    /// Sandboxes by state.
    pub sandboxes: Vec<(SandboxState, usize)>,
    /// Commands running now.
    pub running_commands: usize,
    /// Pre-started sandboxes ready to be claimed.
    pub pool_ready: usize,
    /// Ended commands by status: how many, and their wall time in seconds.
    pub commands_ended: Vec<(CommandStatus, u64, f64)>,
    /// Ended runs of code in contexts by status: how many, and their wall time in seconds.
    pub code_runs_ended: Vec<(CodeStatus, u64, f64)>,
    /// Connections the egress proxies refused.
    pub egress_denied: u64,
}

/// The runtime. Cheap to clone; every clone is the same runtime.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

impl Runtime {
    /// Open the data directory, recover what a previous server left (running sandboxes become
    /// paused, half-deleted ones are finished), and start the expiry reaper.
    pub async fn open(config: RuntimeConfig) -> Result<Runtime, RuntimeError> {
        use std::os::unix::fs::DirBuilderExt;
        let sandboxes_dir = config.data_dir.join("sandboxes");
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(&sandboxes_dir)
            .map_err(|e| RuntimeError::io(format!("create {}", sandboxes_dir.display()), e))?;
        let store = Store::open(&config.data_dir.join("airlock.db"))?;
        let token_secret = store.secret("sandbox_tokens")?;
        let link_secret = store.secret("ingress_links")?;
        let lost = store.lose_running_commands("the server stopped before the command ended")?;
        let egress = Arc::new(EgressSettings {
            resolver: Resolver { pinned: config.network.pinned_hosts.clone() },
            protected: Protected {
                own: config.network.own_addresses.iter().map(|&(ip, port)| (Some(ip), port)).collect(),
            },
            denied_total: Default::default(),
        });
        let mut sandboxes = BTreeMap::new();
        for mut record in store.sandboxes()? {
            if record.pooled && !record.status.state.is_final() {
                // Never claimed: nothing of it is worth keeping.
                remove_sandbox_dir(&config, &record.id);
                record.status =
                    Status::now(SandboxState::Terminated, "pool_discarded", "an unclaimed pool sandbox");
                store.save_sandbox(&record)?;
            }
            match record.status.state {
                SandboxState::Pending | SandboxState::Running => {
                    record.status = Status::now(
                        SandboxState::Paused,
                        "server_restarted",
                        "the server restarted; resume the sandbox to start a fresh agent on its workspace",
                    );
                    store.save_sandbox(&record)?;
                }
                SandboxState::Stopping => {
                    remove_sandbox_dir(&config, &record.id);
                    record.status = Status::now(SandboxState::Terminated, "deleted", "deleted");
                    store.save_sandbox(&record)?;
                }
                _ => {}
            }
            sandboxes.insert(record.id.clone(), Arc::new(Sandbox::new(record, &egress)));
        }
        if lost > 0 {
            tracing::info!(lost, "commands of the previous server marked lost");
        }
        let runtime = Runtime {
            inner: Arc::new(Inner {
                command_slots: Arc::new(Semaphore::new(config.max_concurrent_commands)),
                config,
                store: Arc::new(Mutex::new(store)),
                sandboxes: Mutex::new(sandboxes),
                pool: Mutex::new(Vec::new()),
                pool_claimed: Arc::new(tokio::sync::Notify::new()),
                tally: Arc::default(),
                code_tally: Arc::default(),
                egress,
                token_secret,
                link_secret,
            }),
        };
        runtime.spawn_reaper();
        if runtime.inner.config.pool_size > 0 {
            runtime.spawn_pool_filler();
        }
        Ok(runtime)
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &RuntimeConfig {
        &self.inner.config
    }

    /// The token that opens the owner's sandbox `id` alone (see [`crate::keys::sandbox_token`]).
    pub fn sandbox_token(&self, owner: Option<&str>, id: &str) -> Result<String, RuntimeError> {
        self.find(owner, id)?;
        Ok(crate::keys::sandbox_token(&self.inner.token_secret, id))
    }

    /// The owner of sandbox `id` if `token` is its access token; `Err` when it is not, or when
    /// no such sandbox is visible to anyone.
    pub fn owner_by_token(&self, id: &str, token: &str) -> Result<Option<String>, RuntimeError> {
        let expected = crate::keys::sandbox_token(&self.inner.token_secret, id);
        // Compared in time that does not depend on where the strings differ.
        let same = expected.len() == token.len()
            && expected.bytes().zip(token.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
        let sandbox = self.inner.sandboxes.lock().unwrap_or_else(|e| e.into_inner()).get(id).cloned();
        match sandbox.map(|s| s.record()) {
            Some(record) if same && !record.pooled => Ok(record.owner),
            _ => Err(RuntimeError::SandboxNotFound { id: id.to_owned() }),
        }
    }

    /// The secret ingress links are signed with.
    pub(crate) fn link_secret(&self) -> &str {
        &self.inner.link_secret
    }

    /// The record of sandbox `id` whoever owns it, for a caller that proved its right to it
    /// otherwise (a signed link); pooled sandboxes are nobody's yet.
    pub(crate) fn any_record(&self, id: &str) -> Result<SandboxRecord, RuntimeError> {
        let sandbox = self.inner.sandboxes.lock().unwrap_or_else(|e| e.into_inner()).get(id).cloned();
        match sandbox.map(|s| s.record()) {
            Some(record) if !record.pooled => Ok(record),
            _ => Err(RuntimeError::SandboxNotFound { id: id.to_owned() }),
        }
    }

    /// Run `f` on the store.
    pub fn with_store<T>(&self, f: impl FnOnce(&Store) -> T) -> T {
        f(&self.inner.store.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub(crate) fn save(&self, record: &SandboxRecord) {
        if let Err(e) = self.with_store(|s| s.save_sandbox(record)) {
            tracing::error!(sandbox = %record.id, error = %e, "cannot store a sandbox record");
        }
    }

    fn transition(&self, sandbox: &Sandbox, status: Status) -> SandboxRecord {
        let record = {
            let mut record = sandbox.record.lock().unwrap_or_else(|e| e.into_inner());
            tracing::info!(sandbox = %record.id, from = record.status.state.as_str(),
                           to = status.state.as_str(), reason = %status.reason, "sandbox state");
            record.status = status;
            record.clone()
        };
        self.save(&record);
        record
    }

    pub(crate) fn find(&self, owner: Option<&str>, id: &str) -> Result<Arc<Sandbox>, RuntimeError> {
        let sandboxes = self.inner.sandboxes.lock().unwrap_or_else(|e| e.into_inner());
        let visible = |s: &Sandbox| {
            let record = s.record.lock().unwrap_or_else(|e| e.into_inner());
            !record.pooled && record.owner.as_deref() == owner
        };
        match sandboxes.get(id) {
            Some(s) if visible(s) => Ok(Arc::clone(s)),
            _ => Err(RuntimeError::SandboxNotFound { id: id.to_owned() }),
        }
    }

    fn check_limits(&self, limits: &SandboxLimits) -> Result<(), RuntimeError> {
        let max = &self.inner.config.max_limits;
        let over = |field: &str, value: u64, most: u64| -> Result<(), RuntimeError> {
            if value > most {
                return Err(RuntimeError::Invalid {
                    field: format!("limits.{field}"),
                    reason: format!("{value} is above the server's maximum of {most}"),
                });
            }
            Ok(())
        };
        over("memory_bytes", limits.memory_bytes, max.memory_bytes)?;
        over("max_pids", limits.max_pids, max.max_pids)?;
        over("max_open_files", limits.max_open_files, max.max_open_files)?;
        over("tmp_size_bytes", limits.tmp_size_bytes, max.tmp_size_bytes)?;
        if let (Some(value), Some(most)) = (limits.cpu_millis, max.cpu_millis) {
            over("cpu_millis", value, most)?;
        }
        if let (Some(value), Some(most)) = (limits.max_file_bytes, max.max_file_bytes) {
            over("max_file_bytes", value, most)?;
        }
        Ok(())
    }

    fn expiry(&self, ttl: Option<Duration>) -> Result<Option<i64>, RuntimeError> {
        let config = &self.inner.config;
        let ttl = ttl.or(config.default_ttl);
        match (ttl, config.max_ttl) {
            (None, Some(max)) => Err(RuntimeError::Invalid {
                field: "ttl_seconds".to_owned(),
                reason: format!("this server requires a time to live of at most {}s", max.as_secs()),
            }),
            (Some(ttl), Some(max)) if ttl > max => Err(RuntimeError::Invalid {
                field: "ttl_seconds".to_owned(),
                reason: format!("{}s is above the server's maximum of {}s", ttl.as_secs(), max.as_secs()),
            }),
            (ttl, _) => Ok(ttl.map(|t| now_ms() + t.as_millis() as i64)),
        }
    }

    /// Create a sandbox for `owner` and wait until its agent answers. With the default limits
    /// and a pool, it is a claim of a pre-started sandbox.
    pub async fn create(&self, owner: Option<&str>, new: NewSandbox) -> Result<SandboxRecord, RuntimeError> {
        self.check_limits(&new.limits)?;
        self.check_network(&new.network)?;
        let expires_ms = self.expiry(new.ttl)?;
        // Pooled sandboxes have a network namespace of their own; one that shares the host's
        // starts afresh.
        if new.limits == self.inner.config.default_limits && new.network.mode != Mode::Host {
            if let Some(record) = self.claim(owner, &new, expires_ms).await {
                self.start_entrypoint(&record).await;
                return Ok(record);
            }
        }
        let sandbox = self.register(owner, new, expires_ms, false)?;
        let started = {
            let _lifecycle = sandbox.lifecycle.lock().await;
            self.start(&sandbox, "started").await
        };
        match &started {
            Ok(record) => self.start_entrypoint(record).await,
            // A sandbox that never ran has nothing worth keeping but its `failed` record.
            Err(_) => remove_sandbox_dir(&self.inner.config, &sandbox.record().id),
        }
        started
    }

    /// Start the sandbox's entrypoint, if it has one, as a background command. One that cannot
    /// start is logged and shows as a failed command; the sandbox stays up for the caller to see.
    async fn start_entrypoint(&self, record: &SandboxRecord) {
        if record.entrypoint.is_empty() {
            return;
        }
        let spec = CommandSpec {
            argv: record.entrypoint.clone(),
            env: BTreeMap::new(),
            cwd: None,
            timeout: None,
            stdin: None,
            keep_stdin_open: false,
            max_output_bytes: self.inner.config.max_output_bytes,
        };
        if let Err(e) = self.run_command(record.owner.as_deref(), &record.id, spec).await {
            tracing::warn!(sandbox = %record.id, error = %e, "the entrypoint did not start");
        }
    }

    /// Take a running sandbox from the pool and give it to `owner`. Each pool sandbox is
    /// popped by exactly one caller, so none is handed out twice.
    async fn claim(
        &self,
        owner: Option<&str>,
        new: &NewSandbox,
        expires_ms: Option<i64>,
    ) -> Option<SandboxRecord> {
        loop {
            let sandbox = self.inner.pool.lock().unwrap_or_else(|e| e.into_inner()).pop()?;
            self.inner.pool_claimed.notify_one();
            let _lifecycle = sandbox.lifecycle.lock().await;
            if sandbox.state() != SandboxState::Running {
                continue;
            }
            let record = {
                let mut record = sandbox.record.lock().unwrap_or_else(|e| e.into_inner());
                record.owner = owner.map(str::to_owned);
                record.pooled = false;
                record.env = new.env.clone();
                record.metadata = new.metadata.clone();
                record.workdir = new.workdir.clone();
                record.created_ms = now_ms();
                record.expires_ms = expires_ms;
                record.network = new.network.clone();
                record.template = new.template.clone();
                record.image = new.image.clone();
                record.entrypoint = new.entrypoint.clone();
                record.status =
                    Status::now(SandboxState::Running, "started", "running (claimed from the pool)");
                record.clone()
            };
            sandbox.egress.set_policy(record.network.clone());
            self.save(&record);
            return Some(record);
        }
    }

    /// Change a sandbox's metadata: a present value sets its key, `None` removes it.
    pub fn patch_metadata(
        &self,
        owner: Option<&str>,
        id: &str,
        patch: &BTreeMap<String, Option<String>>,
    ) -> Result<SandboxRecord, RuntimeError> {
        let sandbox = self.find(owner, id)?;
        self.update_record(&sandbox, "change metadata", |record| {
            for (key, value) in patch {
                match value {
                    Some(value) => record.metadata.insert(key.clone(), value.clone()),
                    None => record.metadata.remove(key),
                };
            }
            Ok(())
        })
    }

    /// Make the record of a new sandbox, counting it against the server's maximum.
    fn register(
        &self,
        owner: Option<&str>,
        new: NewSandbox,
        expires_ms: Option<i64>,
        pooled: bool,
    ) -> Result<Arc<Sandbox>, RuntimeError> {
        let id = format!("sbx_{}", &uuid::Uuid::new_v4().simple().to_string()[..20]);
        let mut sandboxes = self.inner.sandboxes.lock().unwrap_or_else(|e| e.into_inner());
        let live = sandboxes.values().filter(|s| !s.state().is_final()).count();
        if live >= self.inner.config.max_sandboxes {
            return Err(RuntimeError::SandboxLimit { max: self.inner.config.max_sandboxes });
        }
        let slot = self.with_store(|s| s.reserve_slot(&id))?;
        let record = SandboxRecord {
            id: id.clone(),
            owner: owner.map(str::to_owned),
            status: Status::now(SandboxState::Pending, "created", "starting"),
            created_ms: now_ms(),
            expires_ms,
            limits: new.limits,
            env: new.env,
            metadata: new.metadata,
            workdir: new.workdir,
            slot,
            pooled,
            network: new.network,
            template: new.template,
            image: new.image,
            entrypoint: new.entrypoint,
            links_valid_from_ms: 0,
        };
        self.save(&record);
        let sandbox = Arc::new(Sandbox::new(record, &self.inner.egress));
        sandboxes.insert(id, Arc::clone(&sandbox));
        Ok(sandbox)
    }

    /// Keep `pool_size` sandboxes with the default limits started and ready, one at a time.
    fn spawn_pool_filler(&self) {
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let mut retry = POOL_RETRY_MIN;
            loop {
                let Some(inner) = weak.upgrade() else { return };
                let runtime = Runtime { inner };
                let ready = runtime.inner.pool.lock().unwrap_or_else(|e| e.into_inner()).len();
                if ready >= runtime.inner.config.pool_size {
                    let claimed = Arc::clone(&runtime.inner.pool_claimed);
                    // The filler must not keep the runtime alive while it waits.
                    drop(runtime);
                    // Checked again after a claim, or after a while in case one was missed.
                    let _ = tokio::time::timeout(Duration::from_secs(5), claimed.notified()).await;
                    continue;
                }
                let new = NewSandbox {
                    limits: runtime.inner.config.default_limits.clone(),
                    env: BTreeMap::new(),
                    metadata: BTreeMap::new(),
                    ttl: None,
                    workdir: "/workspace".to_owned(),
                    network: NetworkPolicy::none(),
                    template: DEFAULT_TEMPLATE.to_owned(),
                    image: None,
                    entrypoint: Vec::new(),
                };
                let started = match runtime.register(None, new, None, true) {
                    Ok(sandbox) => {
                        let _lifecycle = sandbox.lifecycle.lock().await;
                        match runtime.start(&sandbox, "pooled").await {
                            Ok(_) => {
                                if let Some((record, conn, contexts)) = sandbox.live_parts() {
                                    crate::context::warm_python((&record, &conn, &contexts)).await;
                                }
                                Ok(Arc::clone(&sandbox))
                            }
                            Err(e) => Err(e),
                        }
                    }
                    Err(e) => Err(e),
                };
                match started {
                    Ok(sandbox) => {
                        retry = POOL_RETRY_MIN;
                        runtime.inner.pool.lock().unwrap_or_else(|e| e.into_inner()).push(sandbox)
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, retry_in_s = retry.as_secs(), "cannot fill the pool");
                        drop(runtime);
                        tokio::time::sleep(retry).await;
                        // A host that cannot start sandboxes is not asked every few seconds.
                        retry = (retry * 2).min(POOL_RETRY_MAX);
                    }
                }
            }
        });
    }

    /// Launch the sandbox's agent; the caller holds its lifecycle lock.
    async fn start(&self, sandbox: &Arc<Sandbox>, reason: &str) -> Result<SandboxRecord, RuntimeError> {
        let record = sandbox.record();
        let config = &self.inner.config;
        let ctx = LaunchContext {
            data_dir: &config.data_dir,
            airlock_exe: &config.airlock_exe,
            protections: &config.protections,
        };
        let launched = match launch::launch(&record, &ctx).await {
            Ok(launched) => self.serve_egress(sandbox, &record, launched).await,
            Err(e) => Err(e),
        };
        match launched {
            Ok(launched) => {
                let stopping = Arc::new(AtomicBool::new(false));
                let live = Live {
                    conn: launched.conn,
                    ended: launched.ended.clone(),
                    launcher_pid: launched.launcher_pid,
                    stopping: Arc::clone(&stopping),
                    contexts: Arc::new(ContextTable::new(launched.launcher_pid)),
                };
                *sandbox.live.lock().unwrap_or_else(|e| e.into_inner()) = Some(live);
                self.watch_end(sandbox, launched.ended, stopping);
                Ok(self.transition(sandbox, Status::now(SandboxState::Running, reason, "running")))
            }
            Err(e) => {
                self.transition(sandbox, Status::now(SandboxState::Failed, "start_failed", e.to_string()));
                Err(e)
            }
        }
    }

    /// Take the listener the agent makes on the sandbox's loopback and serve the egress proxy
    /// on it. A sandbox whose proxy cannot be set up does not start: it would have no way out
    /// that its policy promises, or, worse, a port its own processes could take.
    async fn serve_egress(
        &self,
        sandbox: &Sandbox,
        record: &SandboxRecord,
        launched: launch::Launched,
    ) -> Result<launch::Launched, RuntimeError> {
        if record.network.mode == Mode::Host {
            return Ok(launched);
        }
        let listener = launched.conn.socket(Op::ListenLoopback { port: PROXY_PORT }).await;
        let served = match listener {
            Ok(listener) => sandbox.egress.serve(listener).map_err(|e| e.to_string()),
            Err(SocketRefused::Agent(message)) => Err(message),
            Err(SocketRefused::Hangup) => Err("the agent hung up".to_owned()),
        };
        match served {
            Ok(()) => Ok(launched),
            Err(message) => {
                launched.conn.hang_up().await;
                launch::kill_launcher(launched.launcher_pid);
                Err(RuntimeError::StartFailed {
                    id: record.id.clone(),
                    engine_code: None,
                    message: format!("the egress proxy could not be set up: {message}"),
                    hint: None,
                })
            }
        }
    }

    /// Refuse a policy the server does not allow.
    pub(crate) fn check_network(&self, policy: &NetworkPolicy) -> Result<(), RuntimeError> {
        policy.validate()?;
        if policy.mode == Mode::Host && !self.inner.config.network.allow_host {
            return Err(RuntimeError::HostNetworkForbidden);
        }
        Ok(())
    }

    /// When a sandbox ends without being asked to (its agent died), mark it failed.
    fn watch_end(
        &self,
        sandbox: &Arc<Sandbox>,
        mut ended: watch::Receiver<Option<LaunchEnd>>,
        stopping: Arc<AtomicBool>,
    ) {
        let (runtime, sandbox) = (self.clone(), Arc::clone(sandbox));
        tokio::spawn(async move {
            let end = ended.wait_for(Option::is_some).await.ok().and_then(|e| e.clone());
            if stopping.load(Ordering::SeqCst) {
                return;
            }
            let _lifecycle = sandbox.lifecycle.lock().await;
            if stopping.load(Ordering::SeqCst) {
                return;
            }
            sandbox.live.lock().unwrap_or_else(|e| e.into_inner()).take();
            sandbox.egress.close();
            let message = end.map(|e| e.message).unwrap_or_else(|| "the sandbox ended".to_owned());
            runtime.transition(&sandbox, Status::now(SandboxState::Failed, "sandbox_exited", message));
        });
    }

    /// Stop the sandbox's processes, if any run; the caller holds its lifecycle lock.
    async fn stop_live(&self, sandbox: &Sandbox) {
        let live = sandbox.live.lock().unwrap_or_else(|e| e.into_inner()).take();
        let Some(mut live) = live else { return };
        live.stopping.store(true, Ordering::SeqCst);
        sandbox.egress.close();
        live.conn.hang_up().await;
        let ended = tokio::time::timeout(STOP_GRACE, live.ended.wait_for(Option::is_some)).await.is_ok();
        if !ended {
            tracing::warn!(sandbox = %sandbox.record().id, "sandbox did not end when hung up on; killing it");
            launch::kill_launcher(live.launcher_pid);
            let _ = tokio::time::timeout(STOP_GRACE, live.ended.wait_for(Option::is_some)).await;
        }
    }

    /// The record of a sandbox.
    pub fn get(&self, owner: Option<&str>, id: &str) -> Result<SandboxRecord, RuntimeError> {
        Ok(self.find(owner, id)?.record())
    }

    /// The owner's sandboxes that pass `filter`, oldest first.
    pub fn list(&self, owner: Option<&str>, filter: &SandboxFilter) -> Page<SandboxRecord> {
        let sandboxes = self.inner.sandboxes.lock().unwrap_or_else(|e| e.into_inner());
        let mut records: Vec<SandboxRecord> = sandboxes
            .values()
            .map(|s| s.record())
            .filter(|r| !r.pooled && r.owner.as_deref() == owner)
            .filter(|r| filter.states.is_empty() || filter.states.contains(&r.status.state))
            .filter(|r| filter.metadata.iter().all(|(k, v)| r.metadata.get(k) == Some(v)))
            .collect();
        records.sort_by_key(|r| r.slot);
        if let Some(after) = &filter.after {
            let slot = records.iter().find(|r| &r.id == after).map(|r| r.slot).unwrap_or(u32::MAX);
            records.retain(|r| r.slot > slot);
        }
        let next = (records.len() > filter.limit).then(|| records[filter.limit - 1].id.clone());
        records.truncate(filter.limit);
        Page { items: records, next }
    }

    /// Stop every process of a running sandbox and keep its workspace.
    pub async fn pause(&self, owner: Option<&str>, id: &str) -> Result<SandboxRecord, RuntimeError> {
        let sandbox = self.find(owner, id)?;
        let _lifecycle = sandbox.lifecycle.lock().await;
        let state = sandbox.state();
        if state != SandboxState::Running {
            return Err(RuntimeError::WrongState { id: id.to_owned(), state, action: "pause" });
        }
        self.stop_live(&sandbox).await;
        Ok(self.transition(&sandbox, Status::now(SandboxState::Paused, "paused", "paused on request")))
    }

    /// Start a fresh agent on a paused sandbox's workspace.
    pub async fn resume(&self, owner: Option<&str>, id: &str) -> Result<SandboxRecord, RuntimeError> {
        let sandbox = self.find(owner, id)?;
        let _lifecycle = sandbox.lifecycle.lock().await;
        let state = sandbox.state();
        if state != SandboxState::Paused {
            return Err(RuntimeError::WrongState { id: id.to_owned(), state, action: "resume" });
        }
        self.transition(&sandbox, Status::now(SandboxState::Pending, "resuming", "starting"));
        let record = self.start(&sandbox, "resumed").await?;
        drop(_lifecycle);
        self.start_entrypoint(&record).await;
        Ok(record)
    }

    /// Delete a sandbox: stop it, remove its workspace, keep its record as `terminated`.
    pub async fn delete(&self, owner: Option<&str>, id: &str) -> Result<SandboxRecord, RuntimeError> {
        let sandbox = self.find(owner, id)?;
        self.terminate(&sandbox, "deleted", "deleted on request").await
    }

    async fn terminate(
        &self,
        sandbox: &Sandbox,
        reason: &str,
        message: &str,
    ) -> Result<SandboxRecord, RuntimeError> {
        let _lifecycle = sandbox.lifecycle.lock().await;
        let record = sandbox.record();
        if record.status.state == SandboxState::Terminated {
            return Err(RuntimeError::SandboxNotFound { id: record.id });
        }
        self.transition(sandbox, Status::now(SandboxState::Stopping, reason, "stopping"));
        self.stop_live(sandbox).await;
        remove_sandbox_dir(&self.inner.config, &record.id);
        Ok(self.transition(sandbox, Status::now(SandboxState::Terminated, reason, message)))
    }

    /// Set a sandbox's expiry to `ttl` from now.
    pub fn renew(&self, owner: Option<&str>, id: &str, ttl: Duration) -> Result<SandboxRecord, RuntimeError> {
        let sandbox = self.find(owner, id)?;
        let expires_ms = self.expiry(Some(ttl))?;
        self.update_record(&sandbox, "renew", |record| {
            record.expires_ms = expires_ms;
            Ok(())
        })
    }

    /// Change the record of a sandbox that has not ended with `change`, then store it.
    pub(crate) fn update_record(
        &self,
        sandbox: &Sandbox,
        action: &'static str,
        change: impl FnOnce(&mut SandboxRecord) -> Result<(), RuntimeError>,
    ) -> Result<SandboxRecord, RuntimeError> {
        let record = {
            let mut record = sandbox.record.lock().unwrap_or_else(|e| e.into_inner());
            if record.status.state.is_final() {
                return Err(RuntimeError::WrongState {
                    id: record.id.clone(),
                    state: record.status.state,
                    action,
                });
            }
            change(&mut record)?;
            record.clone()
        };
        self.save(&record);
        Ok(record)
    }

    fn spawn_reaper(&self) {
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                let runtime = Runtime { inner };
                let now = now_ms();
                let expired: Vec<Arc<Sandbox>> = {
                    let sandboxes = runtime.inner.sandboxes.lock().unwrap_or_else(|e| e.into_inner());
                    sandboxes
                        .values()
                        .filter(|s| {
                            let r = s.record.lock().unwrap_or_else(|e| e.into_inner());
                            !r.status.state.is_final() && r.expires_ms.is_some_and(|t| t <= now)
                        })
                        .cloned()
                        .collect()
                };
                for sandbox in expired {
                    let runtime = runtime.clone();
                    tokio::spawn(async move {
                        let _ = runtime.terminate(&sandbox, "expired", "its time to live ended").await;
                    });
                }
            }
        });
    }

    /// The agent of a running sandbox, for the operations other modules carry out through it.
    pub(crate) fn running_agent(
        &self,
        owner: Option<&str>,
        id: &str,
        action: &'static str,
    ) -> Result<Arc<AgentConn>, RuntimeError> {
        self.running(owner, id, action).map(|(_, conn)| conn)
    }

    /// A running sandbox's record, agent and code contexts.
    pub(crate) fn running_contexts(
        &self,
        owner: Option<&str>,
        id: &str,
        action: &'static str,
    ) -> Result<(SandboxRecord, Arc<AgentConn>, Arc<ContextTable>), RuntimeError> {
        let (sandbox, _) = self.running(owner, id, action)?;
        let state = sandbox.state();
        sandbox.live_parts().ok_or(RuntimeError::WrongState { id: id.to_owned(), state, action })
    }

    /// Count a run of code that ended, for metrics.
    pub(crate) fn count_code_run(&self, status: CodeStatus, duration_ms: u64) {
        self.inner.code_tally.count(status, duration_ms);
    }

    /// One of the server's slots for running commands and code, held until dropped.
    pub(crate) fn command_slot(&self) -> Result<tokio::sync::OwnedSemaphorePermit, RuntimeError> {
        Arc::clone(&self.inner.command_slots)
            .try_acquire_owned()
            .map_err(|_| RuntimeError::CommandLimit { max: self.inner.config.max_concurrent_commands })
    }

    /// A running sandbox and its agent.
    fn running(
        &self,
        owner: Option<&str>,
        id: &str,
        action: &'static str,
    ) -> Result<(Arc<Sandbox>, Arc<AgentConn>), RuntimeError> {
        let sandbox = self.find(owner, id)?;
        let state = sandbox.state();
        match (state, sandbox.conn()) {
            (SandboxState::Running, Some(conn)) => Ok((sandbox, conn)),
            _ => Err(RuntimeError::WrongState { id: id.to_owned(), state, action }),
        }
    }

    /// Start a command in a running sandbox.
    pub async fn run_command(
        &self,
        owner: Option<&str>,
        id: &str,
        spec: CommandSpec,
    ) -> Result<Arc<CommandHandle>, RuntimeError> {
        let (sandbox, conn) = self.running(owner, id, "run a command")?;
        let record = sandbox.record();
        let max_output = self.inner.config.max_output_bytes;
        if spec.max_output_bytes > max_output {
            return Err(RuntimeError::Invalid {
                field: "max_output_bytes".to_owned(),
                reason: format!("{} is above the server's maximum of {max_output}", spec.max_output_bytes),
            });
        }
        let permit = self.command_slot()?;
        let mut env: Vec<(String, String)> = record.env.into_iter().collect();
        env.extend(spec.env);
        let cwd = spec.cwd.unwrap_or(record.workdir);
        let start = StartRequest {
            argv: spec.argv.clone(),
            env,
            cwd: cwd.clone(),
            timeout_ms: spec.timeout.map(|t| t.as_millis() as u64),
            stdin: spec.stdin,
            keep_stdin_open: spec.keep_stdin_open,
            max_output_bytes: spec.max_output_bytes,
        };
        let (agent_id, answers) =
            conn.open(Op::Start(start)).await.map_err(|_| RuntimeError::AgentUnavailable {
                id: id.to_owned(),
                reason: "its connection is closed".to_owned(),
            })?;
        let command = CommandRecord {
            id: format!("cmd_{}", &uuid::Uuid::new_v4().simple().to_string()[..20]),
            sandbox_id: id.to_owned(),
            argv: spec.argv,
            cwd,
            status: CommandStatus::Running,
            exit_code: None,
            signal: None,
            output_truncated: false,
            error: None,
            started_ms: now_ms(),
            ended_ms: None,
            usage: CommandUsage::default(),
        };
        self.with_store(|s| s.save_command(&command))?;
        let handle = CommandHandle::new(command, conn, agent_id);
        {
            let mut commands = sandbox.commands.lock().unwrap_or_else(|e| e.into_inner());
            let finished = commands.iter().filter(|c| !c.is_running()).count();
            if finished >= KEPT_FINISHED_COMMANDS {
                if let Some(oldest) = commands.iter().position(|c| !c.is_running()) {
                    commands.remove(oldest);
                }
            }
            commands.push(Arc::clone(&handle));
        }
        let (store, tally) = (Arc::clone(&self.inner.store), Arc::clone(&self.inner.tally));
        tokio::spawn(follow(Arc::clone(&handle), answers, store, tally, permit));
        Ok(handle)
    }

    /// A command the runtime still follows (or kept after its end).
    pub fn command(
        &self,
        owner: Option<&str>,
        id: &str,
        command_id: &str,
    ) -> Result<Arc<CommandHandle>, RuntimeError> {
        let sandbox = self.find(owner, id)?;
        let commands = sandbox.commands.lock().unwrap_or_else(|e| e.into_inner());
        commands.iter().find(|c| c.id() == command_id).cloned().ok_or_else(|| RuntimeError::CommandNotFound {
            sandbox_id: id.to_owned(),
            id: command_id.to_owned(),
        })
    }

    /// The record of a command, from memory or, for older ones, the store.
    pub fn command_record(
        &self,
        owner: Option<&str>,
        id: &str,
        command_id: &str,
    ) -> Result<CommandRecord, RuntimeError> {
        match self.command(owner, id, command_id) {
            Ok(handle) => Ok(handle.record()),
            Err(RuntimeError::CommandNotFound { .. }) => {
                self.with_store(|s| s.commands(id))?.into_iter().find(|c| c.id == command_id).ok_or_else(
                    || RuntimeError::CommandNotFound { sandbox_id: id.to_owned(), id: command_id.to_owned() },
                )
            }
            Err(e) => Err(e),
        }
    }

    /// Every command of a sandbox, oldest first.
    pub fn commands(&self, owner: Option<&str>, id: &str) -> Result<Vec<CommandRecord>, RuntimeError> {
        let sandbox = self.find(owner, id)?;
        let mut records = self.with_store(|s| s.commands(id))?;
        let commands = sandbox.commands.lock().unwrap_or_else(|e| e.into_inner());
        for handle in commands.iter() {
            let live = handle.record();
            if let Some(stored) = records.iter_mut().find(|r| r.id == live.id) {
                *stored = live;
            }
        }
        Ok(records)
    }

    async fn command_op(
        &self,
        handle: &CommandHandle,
        op: Op,
        action: &'static str,
    ) -> Result<(), RuntimeError> {
        let record = handle.record();
        if record.status != CommandStatus::Running {
            return Err(RuntimeError::CommandEnded { id: record.id, action });
        }
        let (conn, _) = handle.agent();
        match conn.call(op).await {
            Ok(Event::Done) => Ok(()),
            Ok(Event::Error { message }) => {
                if handle.is_running() {
                    Err(RuntimeError::AgentRefused { id: record.sandbox_id, message })
                } else {
                    Err(RuntimeError::CommandEnded { id: record.id, action })
                }
            }
            _ => {
                Err(RuntimeError::AgentUnavailable { id: record.sandbox_id, reason: "no answer".to_owned() })
            }
        }
    }

    /// Write to a background command's standard input.
    pub async fn write_stdin(&self, handle: &CommandHandle, data: String) -> Result<(), RuntimeError> {
        let (_, command) = handle.agent();
        self.command_op(handle, Op::Stdin { command, data }, "write its stdin").await
    }

    /// Close a background command's standard input.
    pub async fn close_stdin(&self, handle: &CommandHandle) -> Result<(), RuntimeError> {
        let (_, command) = handle.agent();
        self.command_op(handle, Op::CloseStdin { command }, "close its stdin").await
    }

    /// Send a signal to a command's main process.
    pub async fn signal(&self, handle: &CommandHandle, signal: i32) -> Result<(), RuntimeError> {
        let (_, command) = handle.agent();
        self.command_op(handle, Op::Signal { command, signal }, "signal it").await
    }

    /// Kill a command and every process it started.
    pub async fn kill(&self, handle: &CommandHandle) -> Result<(), RuntimeError> {
        let (_, command) = handle.agent();
        self.command_op(handle, Op::Kill { command }, "kill it").await
    }

    /// Counts for metrics and health.
    pub fn stats(&self) -> RuntimeStats {
        let sandboxes = self.inner.sandboxes.lock().unwrap_or_else(|e| e.into_inner());
        let mut by_state: Vec<(SandboxState, usize)> = SandboxState::ALL.iter().map(|s| (*s, 0)).collect();
        for sandbox in sandboxes.values() {
            let state = sandbox.state();
            if let Some(entry) = by_state.iter_mut().find(|(s, _)| *s == state) {
                entry.1 += 1;
            }
        }
        let running_commands =
            self.inner.config.max_concurrent_commands - self.inner.command_slots.available_permits();
        let pool_ready = self.inner.pool.lock().unwrap_or_else(|e| e.into_inner()).len();
        let commands_ended = self.inner.tally.snapshot();
        let code_runs_ended = self.inner.code_tally.snapshot();
        let egress_denied = self.inner.egress.denied_total.load(Ordering::Relaxed);
        RuntimeStats {
            sandboxes: by_state,
            running_commands,
            pool_ready,
            commands_ended,
            code_runs_ended,
            egress_denied,
        }
    }

    /// Pause every running sandbox, for a clean server stop: they come back paused.
    pub async fn shutdown(&self) {
        let running: Vec<Arc<Sandbox>> = {
            let sandboxes = self.inner.sandboxes.lock().unwrap_or_else(|e| e.into_inner());
            sandboxes.values().filter(|s| s.state() == SandboxState::Running).cloned().collect()
        };
        let stops = running.into_iter().map(|sandbox| {
            let runtime = self.clone();
            async move {
                let _lifecycle = sandbox.lifecycle.lock().await;
                runtime.stop_live(&sandbox).await;
                runtime.transition(
                    &sandbox,
                    Status::now(
                        SandboxState::Paused,
                        "server_stopped",
                        "the server stopped; resume to continue",
                    ),
                );
            }
        });
        for stop in stops.map(tokio::spawn).collect::<Vec<_>>() {
            let _ = stop.await;
        }
    }
}

fn remove_sandbox_dir(config: &RuntimeConfig, id: &str) {
    let dir = launch::sandbox_dir(&config.data_dir, id);
    // remove_dir_all does not follow symbolic links the sandbox may have planted.
    if let Err(e) = std::fs::remove_dir_all(&dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(sandbox = %id, error = %e, "cannot remove the sandbox's directory");
        }
    }
}
