//! Code contexts in running sandboxes: stateful Python, JavaScript and Bash interpreters kept by
//! the sandbox's agent, and runs of code in them. A context lives as long as its sandbox's agent:
//! a pause or a server restart ends it (memory state is not kept). Runs in one context take
//! turns; runs in different contexts go on at once.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use airlock_agent::protocol::{CodeMode, ContextStartRequest, Event, Language, Op};
use tokio::sync::mpsc;

use crate::agent_conn::{AgentConn, SocketRefused};
use crate::code::{
    failed_outcome, CodeEvent, CodeEvents, CodeOutcome, CodeRun, CodeStatus, CodeUsage, ContextRecord,
    NewContext,
};
use crate::error::RuntimeError;
use crate::kernel::{CodeEnd, Fate, KernelLink, RunCodeRequest, RunSignal, RunStatus};
use crate::model::{now_ms, SandboxRecord};
use crate::runtime::Runtime;

/// Contexts one sandbox may have at once.
pub const MAX_CONTEXTS_PER_SANDBOX: usize = 32;

/// The contexts of one running sandbox; dropped with its agent.
pub(crate) struct ContextTable {
    entries: Mutex<BTreeMap<String, Arc<Context>>>,
    /// Held while a context is created, so that two first uses of a default context make one.
    creating: tokio::sync::Mutex<()>,
    /// The sandbox's launcher, under which its kernels' host pids are found.
    launcher: Option<u32>,
}

struct Context {
    record: Mutex<ContextRecord>,
    /// The kernel's pipes, held for the whole of each run: runs in one context take turns.
    /// `None` when it has no kernel: the next run starts one.
    kernel: tokio::sync::Mutex<Option<KernelLink>>,
    /// Reaches the run going on, if any.
    signals: Mutex<Option<mpsc::UnboundedSender<RunSignal>>>,
    /// Set once the context is deleted: a run that gets the kernel after that ends without
    /// starting one, which would outlive the context in the sandbox.
    deleted: AtomicBool,
}

impl Context {
    fn record(&self) -> ContextRecord {
        self.record.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn update(&self, f: impl FnOnce(&mut ContextRecord)) {
        f(&mut self.record.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// Tell the run going on, if any.
    fn signal(&self, signal: RunSignal) {
        if let Some(run) = self.signals.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            let _ = run.send(signal);
        }
    }
}

impl ContextTable {
    /// The table of a sandbox started by `launcher`.
    pub(crate) fn new(launcher: Option<u32>) -> ContextTable {
        ContextTable { entries: Mutex::default(), creating: tokio::sync::Mutex::new(()), launcher }
    }

    fn get(&self, sandbox_id: &str, id: &str) -> Result<Arc<Context>, RuntimeError> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.get(id).cloned().ok_or_else(|| RuntimeError::ContextNotFound {
            sandbox_id: sandbox_id.to_owned(),
            id: id.to_owned(),
        })
    }
}

impl Runtime {
    /// Create a context and start its interpreter.
    pub async fn create_context(
        &self,
        owner: Option<&str>,
        sandbox_id: &str,
        new: NewContext,
    ) -> Result<ContextRecord, RuntimeError> {
        let id = format!("ctx_{}", &uuid::Uuid::new_v4().simple().to_string()[..20]);
        self.start_context(owner, sandbox_id, id, new).await.map(|c| c.record())
    }

    async fn start_context(
        &self,
        owner: Option<&str>,
        sandbox_id: &str,
        id: String,
        new: NewContext,
    ) -> Result<Arc<Context>, RuntimeError> {
        if let Some(cwd) = &new.cwd {
            if !cwd.starts_with('/') {
                return Err(RuntimeError::Invalid {
                    field: "cwd".to_owned(),
                    reason: "must be an absolute path inside the sandbox".to_owned(),
                });
            }
        }
        let (record, conn, table) = self.running_contexts(owner, sandbox_id, "create a context")?;
        start_context_in((&record, &conn, &table), id, new).await
    }

    /// The contexts of a running sandbox.
    pub fn contexts(
        &self,
        owner: Option<&str>,
        sandbox_id: &str,
    ) -> Result<Vec<ContextRecord>, RuntimeError> {
        let (_, _, table) = self.running_contexts(owner, sandbox_id, "list its contexts")?;
        let entries = table.entries.lock().unwrap_or_else(|e| e.into_inner());
        Ok(entries.values().map(|c| c.record()).collect())
    }

    /// One context.
    pub fn context(
        &self,
        owner: Option<&str>,
        sandbox_id: &str,
        id: &str,
    ) -> Result<ContextRecord, RuntimeError> {
        let (_, _, table) = self.running_contexts(owner, sandbox_id, "get a context")?;
        Ok(table.get(sandbox_id, id)?.record())
    }

    /// Stop a context's interpreter and forget it; a run going on in it ends `context_lost`.
    pub async fn delete_context(
        &self,
        owner: Option<&str>,
        sandbox_id: &str,
        id: &str,
    ) -> Result<(), RuntimeError> {
        let (_, conn, table) = self.running_contexts(owner, sandbox_id, "delete a context")?;
        let context = table.get(sandbox_id, id)?;
        table.entries.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
        context.deleted.store(true, Ordering::SeqCst);
        context.signal(RunSignal::Stopped);
        // The run going on ends on the signal; while its kernel is held here, no run can start
        // another one, and those waiting their turn see the context deleted.
        let mut kernel = context.kernel.lock().await;
        *kernel = None;
        call_done(&conn, sandbox_id, Op::ContextStop { context: id.to_owned() }).await
    }

    /// Start a context's interpreter afresh: its state is gone, its id and settings stay. A run
    /// going on in it ends `context_lost`.
    pub async fn restart_context(
        &self,
        owner: Option<&str>,
        sandbox_id: &str,
        id: &str,
    ) -> Result<ContextRecord, RuntimeError> {
        let (record, conn, table) = self.running_contexts(owner, sandbox_id, "restart a context")?;
        let context = table.get(sandbox_id, id)?;
        let _creating = table.creating.lock().await;
        context.signal(RunSignal::Stopped);
        stop_kernel(&conn, sandbox_id, id).await?;
        // The run going on, if any, has ended on the signal and left the kernel.
        let mut kernel = context.kernel.lock().await;
        *kernel = None;
        match start_kernel(&conn, &record, &context.record(), table.launcher).await {
            Ok(link) => *kernel = Some(link),
            Err(e) => {
                table.entries.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
                return Err(e);
            }
        }
        context.update(|r| {
            r.execution_count = 0;
            r.restarts += 1;
        });
        Ok(context.record())
    }

    /// Interrupt the run going on in a context, as its timeout would: the interpreter keeps its
    /// state; one that ignores the interrupt is restarted.
    pub async fn interrupt_context(
        &self,
        owner: Option<&str>,
        sandbox_id: &str,
        id: &str,
    ) -> Result<(), RuntimeError> {
        let (_, _, table) = self.running_contexts(owner, sandbox_id, "interrupt a context")?;
        table.get(sandbox_id, id)?.signal(RunSignal::Interrupt);
        Ok(())
    }

    /// Run code in a context; the events come as the run goes. It waits its turn behind the
    /// context's other runs.
    pub async fn run_code(
        &self,
        owner: Option<&str>,
        sandbox_id: &str,
        run: CodeRun,
    ) -> Result<CodeEvents, RuntimeError> {
        let max_output = self.config().max_output_bytes;
        if run.max_output_bytes > max_output {
            return Err(RuntimeError::Invalid {
                field: "max_output_bytes".to_owned(),
                reason: format!("{} is above the server's maximum of {max_output}", run.max_output_bytes),
            });
        }
        if run.mode == CodeMode::Handler && run.language == Language::Bash && run.context.is_none() {
            return Err(RuntimeError::Invalid {
                field: "language".to_owned(),
                reason: "handler mode is for python and javascript".to_owned(),
            });
        }
        let (record, conn, table) = self.running_contexts(owner, sandbox_id, "run code")?;
        let context = match &run.context {
            Some(id) => table.get(sandbox_id, id)?,
            None => {
                let id = run.language.as_str().to_owned();
                match table.get(sandbox_id, &id) {
                    Ok(context) => context,
                    Err(_) => {
                        let new = NewContext { language: run.language, cwd: None, env: BTreeMap::new() };
                        self.start_context(owner, sandbox_id, id, new).await?
                    }
                }
            }
        };
        let language = context.record().language;
        if run.mode == CodeMode::Handler && language == Language::Bash {
            return Err(RuntimeError::Invalid {
                field: "mode".to_owned(),
                reason: "handler mode is for python and javascript contexts, not bash".to_owned(),
            });
        }
        if language == Language::Bash && run.code.contains('\0') {
            return Err(RuntimeError::Invalid {
                field: "code".to_owned(),
                reason: "bash code cannot contain a NUL character".to_owned(),
            });
        }
        let request = RunCodeRequest {
            context: context.record().id,
            code: run.code,
            mode: run.mode,
            event: run.event,
            timeout_ms: run.timeout.map(|t| t.as_millis() as u64),
            max_output_bytes: run.max_output_bytes,
            stdin: None,
            env: Vec::new(),
            filename: None,
        };
        self.start_run((record, conn, table), context, request)
    }

    /// Run a script once in a sandbox's pre-started Python context, if it has one: the context
    /// is retired afterwards. `None` when there is no such context.
    pub(crate) fn run_script(
        &self,
        owner: Option<&str>,
        sandbox_id: &str,
        request: RunCodeRequest,
    ) -> Option<Result<CodeEvents, RuntimeError>> {
        let (record, conn, table) = self.running_contexts(owner, sandbox_id, "run code").ok()?;
        let context = table.get(sandbox_id, Language::Python.as_str()).ok()?;
        let request = RunCodeRequest { context: context.record().id, ..request };
        Some(self.start_run((record, conn, table), context, request))
    }

    /// Run code once the context's earlier runs are done; its events come as the run goes.
    fn start_run(
        &self,
        (record, conn, table): (SandboxRecord, Arc<AgentConn>, Arc<ContextTable>),
        context: Arc<Context>,
        request: RunCodeRequest,
    ) -> Result<CodeEvents, RuntimeError> {
        let permit = self.command_slot()?;
        let (tx, rx) = mpsc::unbounded_channel();
        let runtime = self.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let mut kernel = context.kernel.lock().await;
            let id = request.context.clone();
            let (signals, mut signalled) = mpsc::unbounded_channel();
            *context.signals.lock().unwrap_or_else(|e| e.into_inner()) = Some(signals);
            context.update(|r| r.running = true);
            let live = (&record, &conn, &table);
            let end = drive_run(live, &context, &mut kernel, &request, &tx, &mut signalled).await;
            *context.signals.lock().unwrap_or_else(|e| e.into_inner()) = None;
            drop(kernel);
            let outcome = match end {
                Ok(end) => {
                    context.update(|r| {
                        r.execution_count = if end.restarted { 0 } else { end.execution_count };
                        r.restarts += u64::from(end.restarted);
                    });
                    outcome_of(id, end)
                }
                Err(e) => failed_outcome(Some(id), e.to_string()),
            };
            context.update(|r| r.running = false);
            runtime.count_code_run(outcome.status, outcome.usage.duration_ms);
            let _ = tx.send(CodeEvent::End(outcome));
        });
        Ok(rx)
    }
}

/// Run `request` in the context's kernel (starting a fresh one first if it has none or its
/// kernel ended between runs), and deal with the kernel as the run left it.
async fn drive_run(
    live: LiveParts<'_>,
    context: &Context,
    kernel: &mut Option<KernelLink>,
    request: &RunCodeRequest,
    events: &mpsc::UnboundedSender<CodeEvent>,
    signals: &mut mpsc::UnboundedReceiver<RunSignal>,
) -> Result<CodeEnd, RuntimeError> {
    let (record, conn, table) = live;
    if context.deleted.load(Ordering::SeqCst) {
        let message = format!("context {} was deleted", request.context);
        return Ok(CodeEnd { status: RunStatus::ContextLost, message: Some(message), ..CodeEnd::default() });
    }
    if !kernel.as_mut().is_some_and(KernelLink::alive) {
        *kernel = None;
        stop_kernel(conn, &record.id, &request.context).await?;
    }
    let link = match kernel {
        Some(link) => link,
        None => kernel.insert(start_kernel(conn, record, &context.record(), table.launcher).await?),
    };
    let (mut end, fate) = link.run(conn, request, events, signals).await;
    match fate {
        Fate::Idle => {}
        Fate::Stopped => *kernel = None,
        Fate::Retire => {
            *kernel = None;
            // Killed while the answer goes out; the next run starts a fresh kernel.
            let _ = conn.open(Op::ContextStop { context: request.context.clone() }).await;
        }
        Fate::Restart(why) => {
            *kernel = None;
            let restarted = match stop_kernel(conn, &record.id, &request.context).await {
                Ok(()) => start_kernel(conn, record, &context.record(), table.launcher).await,
                Err(e) => Err(e),
            };
            end.message = Some(match restarted {
                Ok(link) => {
                    *kernel = Some(link);
                    end.restarted = true;
                    why
                }
                Err(e) => format!("{why}; {e}"),
            });
        }
    }
    Ok(end)
}

/// Start the default Python context of a sandbox for the pool, so that its first Python run,
/// and a one-shot Python run in it, need no interpreter start-up. A host without `python3` just
/// gets pool sandboxes without one.
pub(crate) async fn warm_python(live: LiveParts<'_>) {
    let new = NewContext { language: Language::Python, cwd: None, env: BTreeMap::new() };
    let id = Language::Python.as_str().to_owned();
    if let Err(e) = start_context_in(live, id, new).await {
        tracing::debug!(sandbox = %live.0.id, error = %e, "no warm Python context in a pool sandbox");
    }
}

/// A running sandbox's record, agent and contexts.
pub(crate) type LiveParts<'a> = (&'a SandboxRecord, &'a Arc<AgentConn>, &'a Arc<ContextTable>);

/// Start context `id` in a running sandbox (or find it started).
async fn start_context_in(
    live: LiveParts<'_>,
    id: String,
    new: NewContext,
) -> Result<Arc<Context>, RuntimeError> {
    let (record, conn, table) = live;
    let sandbox_id = record.id.as_str();
    let _creating = table.creating.lock().await;
    if let Ok(existing) = table.get(sandbox_id, &id) {
        return Ok(existing);
    }
    let count = table.entries.lock().unwrap_or_else(|e| e.into_inner()).len();
    if count >= MAX_CONTEXTS_PER_SANDBOX {
        return Err(RuntimeError::ContextLimit { max: MAX_CONTEXTS_PER_SANDBOX });
    }
    let spec = ContextRecord {
        id: id.clone(),
        language: new.language,
        cwd: new.cwd.unwrap_or_else(|| record.workdir.clone()),
        env: new.env,
        created_ms: now_ms(),
        execution_count: 0,
        running: false,
        restarts: 0,
    };
    let link = start_kernel(conn, record, &spec, table.launcher).await?;
    let context = Arc::new(Context {
        record: Mutex::new(spec),
        kernel: tokio::sync::Mutex::new(Some(link)),
        signals: Mutex::default(),
        deleted: AtomicBool::new(false),
    });
    table.entries.lock().unwrap_or_else(|e| e.into_inner()).insert(id, Arc::clone(&context));
    Ok(context)
}

/// A kernel's environment: the sandbox's, then the context's own.
fn kernel_env(record: &SandboxRecord, own: &BTreeMap<String, String>) -> Vec<(String, String)> {
    record.env.iter().chain(own).map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// Send a request answered with `done`.
async fn call_done(conn: &AgentConn, sandbox_id: &str, op: Op) -> Result<(), RuntimeError> {
    match conn.call(op).await {
        Ok(Event::Done) => Ok(()),
        Ok(Event::Error { message }) => {
            Err(RuntimeError::AgentRefused { id: sandbox_id.to_owned(), message })
        }
        _ => Err(agent_gone(sandbox_id)),
    }
}

/// Ask the agent to start context `spec`'s kernel and take over its pipes once it is ready.
async fn start_kernel(
    conn: &AgentConn,
    record: &SandboxRecord,
    spec: &ContextRecord,
    launcher: Option<u32>,
) -> Result<KernelLink, RuntimeError> {
    let start = ContextStartRequest {
        context: spec.id.clone(),
        language: spec.language,
        cwd: spec.cwd.clone(),
        env: kernel_env(record, &spec.env),
    };
    let failed = |message: String| RuntimeError::ContextStartFailed {
        sandbox_id: record.id.clone(),
        language: spec.language.as_str(),
        message,
    };
    match conn.descriptors(Op::ContextStart(start)).await {
        Ok((Event::ContextReady { pid }, pipes)) => KernelLink::new(spec.language, pipes, launcher, pid)
            .map_err(|e| failed(format!("cannot take over the kernel's pipes: {e}"))),
        Err(SocketRefused::Agent(message)) => Err(failed(message)),
        _ => Err(agent_gone(&record.id)),
    }
}

/// Have the agent kill context `id`'s kernel and forget it; a context it does not know is
/// already stopped.
async fn stop_kernel(conn: &AgentConn, sandbox_id: &str, id: &str) -> Result<(), RuntimeError> {
    match conn.call(Op::ContextStop { context: id.to_owned() }).await {
        Ok(Event::Done | Event::Error { .. }) => Ok(()),
        _ => Err(agent_gone(sandbox_id)),
    }
}

fn outcome_of(context: String, end: CodeEnd) -> CodeOutcome {
    let status = match end.status {
        RunStatus::Ok => CodeStatus::Ok,
        RunStatus::Error => CodeStatus::Error,
        RunStatus::Interrupted => CodeStatus::Interrupted,
        RunStatus::Timeout => CodeStatus::Timeout,
        RunStatus::ContextLost => CodeStatus::ContextLost,
    };
    let code = match (end.status, end.restarted) {
        (RunStatus::ContextLost, _) => Some("CONTEXT_LOST"),
        (_, true) => Some("CONTEXT_RESTARTED"),
        _ => None,
    };
    CodeOutcome {
        context: Some(context),
        status,
        execution_count: Some(end.execution_count),
        exit_code: end.exit_code,
        code,
        message: end.message,
        output_truncated: end.output_truncated,
        usage: CodeUsage {
            duration_ms: end.duration_ms,
            cpu_ms: end.cpu_ms,
            max_rss_bytes: end.max_rss_bytes,
            stdout_bytes: end.stdout_bytes,
            stderr_bytes: end.stderr_bytes,
        },
    }
}

fn agent_gone(sandbox_id: &str) -> RuntimeError {
    RuntimeError::AgentUnavailable {
        id: sandbox_id.to_owned(),
        reason: "its connection is closed".to_owned(),
    }
}
