//! Code contexts in running sandboxes: stateful Python, JavaScript and Bash interpreters kept by
//! the sandbox's agent, and runs of code in them. A context lives as long as its sandbox's agent:
//! a pause or a server restart ends it (memory state is not kept). Runs in one context take
//! turns; runs in different contexts go on at once.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use airlock_agent::protocol::{
    CodeEnd, CodeMode, ContextStartRequest, Event, Language, Op, OutputStream, RunCodeRequest, RunStatus,
};
use tokio::sync::mpsc;

use crate::agent_conn::AgentConn;
use crate::code::{
    failed_outcome, CodeEvent, CodeEvents, CodeOutcome, CodeRun, CodeStatus, CodeUsage, ContextRecord,
    NewContext,
};
use crate::error::RuntimeError;
use crate::model::{now_ms, SandboxRecord};
use crate::runtime::Runtime;

/// Contexts one sandbox may have at once.
pub const MAX_CONTEXTS_PER_SANDBOX: usize = 32;

/// The contexts of one running sandbox; dropped with its agent.
#[derive(Default)]
pub(crate) struct ContextTable {
    entries: Mutex<BTreeMap<String, Arc<Context>>>,
    /// Held while a context is created, so that two first uses of a default context make one.
    creating: tokio::sync::Mutex<()>,
}

struct Context {
    record: Mutex<ContextRecord>,
    /// Held for the whole of each run: runs in one context take turns.
    turn: tokio::sync::Mutex<()>,
}

impl Context {
    fn record(&self) -> ContextRecord {
        self.record.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn update(&self, f: impl FnOnce(&mut ContextRecord)) {
        f(&mut self.record.lock().unwrap_or_else(|e| e.into_inner()));
    }
}

impl ContextTable {
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
        table.get(sandbox_id, id)?;
        table.entries.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
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
        match conn.call(Op::ContextStop { context: id.to_owned() }).await {
            Ok(Event::Done | Event::Error { .. }) => {}
            _ => return Err(agent_gone(sandbox_id)),
        }
        let spec = context.record();
        let start = ContextStartRequest {
            context: id.to_owned(),
            language: spec.language,
            cwd: spec.cwd.clone(),
            env: kernel_env(&record, &spec.env),
        };
        if let Err(e) = start_kernel(&conn, sandbox_id, Op::ContextStart(start), spec.language).await {
            table.entries.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
            return Err(e);
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
        let (_, conn, table) = self.running_contexts(owner, sandbox_id, "interrupt a context")?;
        table.get(sandbox_id, id)?;
        call_done(&conn, sandbox_id, Op::Interrupt { context: id.to_owned() }).await
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
        let (_, conn, table) = self.running_contexts(owner, sandbox_id, "run code")?;
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
        self.start_run(sandbox_id, conn, context, request)
    }

    /// Run a script once in a sandbox's pre-started Python context, if it has one: the context
    /// is retired afterwards. `None` when there is no such context.
    pub(crate) fn run_script(
        &self,
        owner: Option<&str>,
        sandbox_id: &str,
        request: RunCodeRequest,
    ) -> Option<Result<CodeEvents, RuntimeError>> {
        let (_, conn, table) = self.running_contexts(owner, sandbox_id, "run code").ok()?;
        let context = table.get(sandbox_id, Language::Python.as_str()).ok()?;
        let request = RunCodeRequest { context: context.record().id, ..request };
        Some(self.start_run(sandbox_id, conn, context, request))
    }

    /// Send a run to the agent once the context's earlier runs are done; its events come as
    /// the run goes.
    fn start_run(
        &self,
        sandbox_id: &str,
        conn: Arc<AgentConn>,
        context: Arc<Context>,
        request: RunCodeRequest,
    ) -> Result<CodeEvents, RuntimeError> {
        let permit = self.command_slot()?;
        let (tx, rx) = mpsc::unbounded_channel();
        let sandbox_id = sandbox_id.to_owned();
        let runtime = self.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _turn = context.turn.lock().await;
            let id = request.context.clone();
            context.update(|r| r.running = true);
            let end = follow_run(&conn, request, &tx).await;
            let outcome = match end {
                Ok(end) => {
                    context.update(|r| {
                        r.execution_count = if end.restarted { 0 } else { end.execution_count };
                        r.restarts += u64::from(end.restarted);
                    });
                    outcome_of(id, end)
                }
                Err(message) => failed_outcome(Some(id), format!("sandbox {sandbox_id}: {message}")),
            };
            context.update(|r| r.running = false);
            runtime.count_code_run(outcome.status, outcome.usage.duration_ms);
            let _ = tx.send(CodeEvent::End(outcome));
        });
        Ok(rx)
    }
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
    let cwd = new.cwd.unwrap_or_else(|| record.workdir.clone());
    let env = kernel_env(record, &new.env);
    let start = ContextStartRequest { context: id.clone(), language: new.language, cwd: cwd.clone(), env };
    start_kernel(conn, sandbox_id, Op::ContextStart(start), new.language).await?;
    let context = Arc::new(Context {
        record: Mutex::new(ContextRecord {
            id: id.clone(),
            language: new.language,
            cwd,
            env: new.env,
            created_ms: now_ms(),
            execution_count: 0,
            running: false,
            restarts: 0,
        }),
        turn: tokio::sync::Mutex::new(()),
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

/// Ask the agent to start a kernel and wait until it is ready.
async fn start_kernel(
    conn: &AgentConn,
    sandbox_id: &str,
    op: Op,
    language: Language,
) -> Result<(), RuntimeError> {
    match conn.call(op).await {
        Ok(Event::ContextReady { .. }) => Ok(()),
        Ok(Event::Error { message }) => Err(RuntimeError::ContextStartFailed {
            sandbox_id: sandbox_id.to_owned(),
            language: language.as_str(),
            message,
        }),
        _ => Err(agent_gone(sandbox_id)),
    }
}

/// Pass a run's events on until its end.
async fn follow_run(
    conn: &AgentConn,
    request: RunCodeRequest,
    tx: &mpsc::UnboundedSender<CodeEvent>,
) -> Result<CodeEnd, String> {
    let (_, mut answers) =
        conn.open(Op::RunCode(request)).await.map_err(|_| "its agent is gone".to_owned())?;
    while let Some(event) = answers.recv().await {
        let passed = match event {
            Event::Output { stream: OutputStream::Stdout, data } => CodeEvent::Stdout(data),
            Event::Output { stream: OutputStream::Stderr, data } => CodeEvent::Stderr(data),
            Event::CodeResult { main, data } => CodeEvent::Result { main, data },
            Event::CodeError { name, value, traceback } => CodeEvent::Error { name, value, traceback },
            Event::CodeEnd(end) => return Ok(end),
            Event::Error { message } => return Err(message),
            _ => continue,
        };
        // A caller that went away still lets the run finish.
        let _ = tx.send(passed);
    }
    Err("its agent stopped answering during the run".to_owned())
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
