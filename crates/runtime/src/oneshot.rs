//! One-shot runs: a fresh sandbox (claimed from the pool when the limits are the defaults), the
//! code run once in it, the sandbox deleted. The call for users without sessions.

use std::collections::BTreeMap;
use std::time::Duration;

use airlock_agent::protocol::{CodeMode, Language};

use crate::kernel::RunCodeRequest;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::code::{
    failed_outcome, CodeEvent, CodeEvents, CodeOutcome, CodeRun, CodeStatus, CodeUsage, NewContext,
};
use crate::command::{CommandEvent, CommandHandle};
use crate::egress::policy::NetworkPolicy;
use crate::error::RuntimeError;
use crate::files::WriteOptions;
use crate::model::{CommandRecord, CommandSpec, CommandStatus, NewSandbox, SandboxLimits, DEFAULT_TEMPLATE};
use crate::runtime::Runtime;

/// Added to a one-shot run's timeout for its sandbox's time to live, so that a sandbox whose
/// server died mid-run is still reaped.
const TTL_MARGIN: Duration = Duration::from_secs(60);

/// Time to live of a one-shot sandbox whose run has no timeout.
const TTL_WITHOUT_TIMEOUT: Duration = Duration::from_secs(3600);

/// What to run once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OneShot {
    /// The interpreter.
    pub language: Language,
    /// The program's source, run as a script (`python3 -c`, `node -e`, `bash -c`); or, with
    /// `event`, the code that defines the handler.
    pub code: Option<String>,
    /// Files written under `/workspace` first: path relative to it, and contents.
    pub files: Vec<(String, Vec<u8>)>,
    /// The file among `files` to run, when there is no `code`.
    pub entrypoint: Option<String>,
    /// Text on the program's standard input (scripts only).
    pub stdin: Option<String>,
    /// Environment of the program.
    pub env: BTreeMap<String, String>,
    /// The sandbox's limits.
    pub limits: SandboxLimits,
    /// Stop the run after this long.
    pub timeout: Option<Duration>,
    /// Output kept.
    pub max_output_bytes: u64,
    /// Handler mode: call the code's handler with this event instead of running it as a script.
    pub event: Option<Value>,
    /// What the run may reach on the network.
    pub network: NetworkPolicy,
}

impl Runtime {
    /// Run `shot` in a fresh sandbox; returns the sandbox's id and the run's events. The sandbox
    /// is deleted once the run ends.
    pub async fn run_once(
        &self,
        owner: Option<&str>,
        shot: OneShot,
    ) -> Result<(String, CodeEvents), RuntimeError> {
        let plan = plan(&shot)?;
        let ttl = shot.timeout.map_or(TTL_WITHOUT_TIMEOUT, |t| t + TTL_MARGIN);
        let new = NewSandbox {
            limits: shot.limits.clone(),
            env: BTreeMap::new(),
            metadata: BTreeMap::from([("airlock.run".to_owned(), "one-shot".to_owned())]),
            ttl: Some(self.config().max_ttl.map_or(ttl, |max| ttl.min(max))),
            workdir: "/workspace".to_owned(),
            network: shot.network.clone(),
            template: DEFAULT_TEMPLATE.to_owned(),
            image: None,
            entrypoint: Vec::new(),
        };
        let record = self.create(owner, new).await?;
        let id = record.id;
        let handler = matches!(plan, Plan::Handler { .. });
        let events = match self.start_once(owner, &id, shot, plan).await {
            Ok(events) => events,
            Err(e) => {
                self.delete_later(owner, &id);
                return Err(e);
            }
        };
        // Pass the events on, and delete the sandbox once the end has gone by.
        let (tx, rx) = mpsc::unbounded_channel();
        let runtime = self.clone();
        let (owner_for_task, id_for_task) = (owner.map(str::to_owned), id.clone());
        tokio::spawn(async move {
            let mut events = events;
            while let Some(mut event) = events.recv().await {
                let last = matches!(event, CodeEvent::End(_));
                if let CodeEvent::End(outcome) = &mut event {
                    if !handler {
                        // A script ran as a program, whether in a pre-started kernel or not.
                        outcome.context = None;
                        outcome.execution_count = None;
                    }
                }
                let _ = tx.send(event);
                if last {
                    break;
                }
            }
            runtime.delete_later(owner_for_task.as_deref(), &id_for_task);
        });
        Ok((id, rx))
    }

    async fn start_once(
        &self,
        owner: Option<&str>,
        id: &str,
        shot: OneShot,
        plan: Plan,
    ) -> Result<CodeEvents, RuntimeError> {
        let how = WriteOptions { offset: None, create_parents: true, mode: None };
        for (path, data) in &shot.files {
            self.write_file(owner, id, path, data, how).await?;
        }
        match plan {
            Plan::Handler { code, event } => {
                // A handler runs in a fresh namespace: the pool's warm kernel serves when no
                // variables are asked for.
                let warm = shot.language.as_str();
                let context = if shot.env.is_empty() && self.context(owner, id, warm).is_ok() {
                    warm.to_owned()
                } else {
                    let new = NewContext { language: shot.language, cwd: None, env: shot.env };
                    self.create_context(owner, id, new).await?.id
                };
                let run = CodeRun {
                    context: Some(context),
                    language: shot.language,
                    code,
                    mode: CodeMode::Handler,
                    event: Some(event),
                    timeout: shot.timeout,
                    max_output_bytes: shot.max_output_bytes,
                };
                self.run_code(owner, id, run).await
            }
            Plan::Script { argv, entry } => {
                if let Some(events) = self.script_in_warm_kernel(owner, id, &shot, entry.as_deref()) {
                    return events;
                }
                let spec = CommandSpec {
                    argv,
                    env: shot.env,
                    cwd: None,
                    timeout: shot.timeout,
                    stdin: shot.stdin,
                    keep_stdin_open: false,
                    max_output_bytes: shot.max_output_bytes,
                };
                let handle = self.run_command(owner, id, spec).await?;
                let (tx, rx) = mpsc::unbounded_channel();
                tokio::spawn(forward_command(handle, tx));
                Ok(rx)
            }
        }
    }

    /// Run a Python script in the pre-started kernel of a sandbox from the pool, which saves the
    /// interpreter's start-up; `None` when the sandbox has none (or the script is not text).
    fn script_in_warm_kernel(
        &self,
        owner: Option<&str>,
        id: &str,
        shot: &OneShot,
        entry: Option<&str>,
    ) -> Option<Result<CodeEvents, RuntimeError>> {
        if shot.language != Language::Python {
            return None;
        }
        let (code, filename) = match (&shot.code, entry) {
            (Some(code), _) => (code.clone(), None),
            (None, Some(entry)) => {
                let (_, data) = shot.files.iter().find(|(p, _)| p == entry)?;
                (String::from_utf8(data.clone()).ok()?, Some(format!("/workspace/{entry}")))
            }
            (None, None) => return None,
        };
        let request = RunCodeRequest {
            context: String::new(),
            code,
            mode: CodeMode::Script,
            event: None,
            timeout_ms: shot.timeout.map(|t| t.as_millis() as u64),
            max_output_bytes: shot.max_output_bytes,
            stdin: shot.stdin.clone(),
            env: shot.env.clone().into_iter().collect(),
            filename,
        };
        self.run_script(owner, id, request)
    }

    fn delete_later(&self, owner: Option<&str>, id: &str) {
        let (runtime, owner, id) = (self.clone(), owner.map(str::to_owned), id.to_owned());
        tokio::spawn(async move {
            if let Err(e) = runtime.delete(owner.as_deref(), &id).await {
                tracing::warn!(sandbox = %id, error = %e, "cannot delete a one-shot sandbox");
            }
        });
    }
}

/// How a one-shot run goes.
enum Plan {
    /// A program: its command line, and the file among `files` it runs, if not `code`.
    Script {
        argv: Vec<String>,
        entry: Option<String>,
    },
    Handler {
        code: String,
        event: Value,
    },
}

fn invalid(field: &str, reason: impl Into<String>) -> RuntimeError {
    RuntimeError::Invalid { field: field.to_owned(), reason: reason.into() }
}

fn plan(shot: &OneShot) -> Result<Plan, RuntimeError> {
    for (path, _) in &shot.files {
        if path.is_empty() || path.starts_with('/') || path.split('/').any(|part| part == "..") {
            return Err(invalid(
                "files",
                format!("{path:?} must be a relative path under /workspace, without `..`"),
            ));
        }
    }
    if let Some(event) = &shot.event {
        if shot.language == Language::Bash {
            return Err(invalid("event", "handler mode is for python and javascript"));
        }
        if shot.stdin.is_some() {
            return Err(invalid("stdin", "a handler gets its input as `event`, not on stdin"));
        }
        let code = match (&shot.code, &shot.entrypoint) {
            (Some(code), None) => code.clone(),
            (None, Some(entry)) => match shot.files.iter().find(|(p, _)| p == entry) {
                Some((_, data)) => String::from_utf8(data.clone())
                    .map_err(|_| invalid("files", format!("{entry} is not UTF-8 text")))?,
                None => return Err(invalid("entrypoint", format!("{entry} is not among `files`"))),
            },
            _ => return Err(invalid("code", "give the handler's `code`, or `files` and an `entrypoint`")),
        };
        return Ok(Plan::Handler { code, event: event.clone() });
    }
    let (program, flag, default_entry) = match shot.language {
        Language::Python => ("python3", "-c", "main.py"),
        Language::Javascript => ("node", "-e", "index.js"),
        Language::Bash => ("bash", "-c", "main.sh"),
    };
    let (argv, entry) = match (&shot.code, &shot.entrypoint) {
        (Some(_), Some(_)) => return Err(invalid("entrypoint", "give `code` or an `entrypoint`, not both")),
        (Some(code), None) => (vec![program.to_owned(), flag.to_owned(), code.clone()], None),
        (None, entry) => {
            let entry = match entry {
                Some(entry) => entry.clone(),
                None if shot.files.len() == 1 => shot.files[0].0.clone(),
                None => default_entry.to_owned(),
            };
            if !shot.files.iter().any(|(p, _)| *p == entry) {
                return Err(invalid(
                    "entrypoint",
                    format!("{entry} is not among `files`; give `code`, or name the file to run"),
                ));
            }
            (vec![program.to_owned(), entry.clone()], Some(entry))
        }
    };
    if argv.iter().any(|a| a.contains('\0')) {
        return Err(invalid("code", "must not contain NUL characters"));
    }
    Ok(Plan::Script { argv, entry })
}

/// Turn a command's events into a run's.
async fn forward_command(handle: std::sync::Arc<CommandHandle>, tx: mpsc::UnboundedSender<CodeEvent>) {
    let mut changes = handle.subscribe();
    let mut after = 0;
    loop {
        changes.borrow_and_update();
        for event in handle.events_after(after) {
            after = event.seq();
            let passed = match event {
                CommandEvent::Stdout { data, .. } => CodeEvent::Stdout(data),
                CommandEvent::Stderr { data, .. } => CodeEvent::Stderr(data),
                CommandEvent::Exit { record, .. } => {
                    let _ = tx.send(CodeEvent::End(script_outcome(&record)));
                    return;
                }
            };
            let _ = tx.send(passed);
        }
        if changes.changed().await.is_err() {
            let _ =
                tx.send(CodeEvent::End(failed_outcome(None, "the command's record was dropped".to_owned())));
            return;
        }
    }
}

fn script_outcome(record: &CommandRecord) -> CodeOutcome {
    let (status, message) = match record.status {
        CommandStatus::Ok => (CodeStatus::Ok, None),
        CommandStatus::Exited => (CodeStatus::Error, None),
        CommandStatus::Signaled => {
            (CodeStatus::Error, Some(format!("killed by signal {}", record.signal.unwrap_or_default())))
        }
        CommandStatus::Timeout => (CodeStatus::Timeout, Some("its timeout stopped it".to_owned())),
        CommandStatus::Killed => (CodeStatus::Interrupted, Some("a kill request stopped it".to_owned())),
        CommandStatus::Failed | CommandStatus::Lost | CommandStatus::Running => {
            (CodeStatus::Failed, record.error.clone())
        }
    };
    CodeOutcome {
        context: None,
        status,
        execution_count: None,
        exit_code: record.exit_code,
        code: None,
        message,
        output_truncated: record.output_truncated,
        usage: CodeUsage {
            duration_ms: record.usage.duration_ms,
            cpu_ms: record.usage.user_cpu_ms + record.usage.system_cpu_ms,
            max_rss_bytes: record.usage.max_rss_bytes,
            stdout_bytes: record.usage.stdout_bytes,
            stderr_bytes: record.usage.stderr_bytes,
        },
    }
}
