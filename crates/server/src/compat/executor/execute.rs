//! `POST /execute`: check the request, answer at once, and run it in the background as a
//! one-shot run of the runtime (a fresh sandbox, deleted afterwards); the end becomes the result
//! the control plane receives.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use airlock_runtime::egress::policy::NetworkPolicy;
use airlock_runtime::{CodeResult, Language, OneShot, SandboxLimits};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{deliver, workspace, Settings};
use crate::api_code::CodeRunView;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

/// Longest `code` accepted, as the Sandbox Executor documents.
const MAX_CODE_BYTES: usize = 1 << 20;

/// Longest timeout, a day, as the native API takes `__timeout`.
const MAX_TIMEOUT_SECONDS: f64 = 86_400.0;

/// The body of `POST /execute`, as the Sandbox Executor's control plane sends it. Fields it
/// does not know (`session_id` among them) are ignored, as the Sandbox Executor ignores them.
#[derive(Debug, Deserialize)]
pub struct ExecuteRequest {
    /// The id results and heartbeats carry; made up when missing.
    #[serde(default)]
    execution_id: Option<String>,
    /// The source.
    code: String,
    /// `python` (default), `javascript`, or `shell` (also `bash`).
    #[serde(default)]
    language: Option<String>,
    /// The handler's argument; `__timeout` in it (seconds) sets the timeout.
    #[serde(default)]
    event: Option<Value>,
    /// Seconds before the run is stopped.
    #[serde(default)]
    timeout: Option<f64>,
    /// Environment of the program.
    #[serde(default)]
    env_vars: BTreeMap<String, String>,
}

/// A checked request.
struct Job {
    id: String,
    handler: bool,
    shot: OneShot,
}

/// The executions running now, shared by the routes.
#[derive(Debug, Clone, Default)]
pub struct Executions {
    running: Arc<Mutex<HashSet<String>>>,
}

/// Whether an execution may start.
enum Admission {
    Start(Running),
    AlreadyRunning,
    Busy,
}

/// One running execution; it stops counting when dropped.
struct Running {
    executions: Executions,
    id: String,
}

impl Executions {
    /// How many run.
    pub fn count(&self) -> usize {
        self.running.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    fn admit(&self, id: &str, most: usize) -> Admission {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if running.contains(id) {
            Admission::AlreadyRunning
        } else if running.len() >= most {
            Admission::Busy
        } else {
            running.insert(id.to_owned());
            Admission::Start(Running { executions: self.clone(), id: id.to_owned() })
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.executions.running.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.id);
    }
}

/// `POST /execute`. The body is read as JSON whatever its `Content-Type`, since the Sandbox
/// Executor's own examples send it with curl's default. A second request for an execution that
/// runs, or whose result waits for delivery, is answered the same and starts nothing.
pub async fn execute(
    State(state): State<AppState>,
    Extension(executions): Extension<Executions>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(body_error)?;
    let request: ExecuteRequest = crate::extract::parse(&body)?;
    let settings = &state.front_doors.executor;
    let config = state.runtime.config();
    let job = check(request, settings, &config.default_limits, config.max_output_bytes)?;
    let running = match executions.admit(&job.id, settings.max_concurrent_executions) {
        Admission::Start(running) => running,
        Admission::AlreadyRunning => return Ok(accepted(&job.id, "Execution already submitted")),
        Admission::Busy => return Ok(busy(settings.max_concurrent_executions)),
    };
    if state.runtime.with_store(|s| s.outbox_get(deliver::TOPIC, &job.id))?.is_some() {
        return Ok(accepted(&job.id, "Execution already submitted; its result awaits delivery"));
    }
    let id = job.id.clone();
    tokio::spawn(run(state.clone(), running, caller.owner, job));
    Ok(accepted(&id, "Execution submitted"))
}

/// The Sandbox Executor's answer: 200, and the execution is pending.
fn accepted(id: &str, message: &str) -> Response {
    Json(json!({"execution_id": id, "status": "PENDING", "message": message})).into_response()
}

fn busy(most: usize) -> Response {
    let mut response = ApiError::new(
        "EXECUTOR_BUSY",
        format!("{most} executions run already, as many as MAX_CONCURRENT_EXECUTIONS allows"),
        "send it again once one has ended, or raise MAX_CONCURRENT_EXECUTIONS",
    )
    .into_response();
    response.headers_mut().insert(RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

fn body_error(e: BytesRejection) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new("PAYLOAD_TOO_LARGE", "the body is larger than the server accepts", "send less code")
    } else {
        ApiError::new("MALFORMED_JSON", format!("cannot read the body: {e}"), "send the body again")
    }
}

fn check(
    request: ExecuteRequest,
    settings: &Settings,
    default_limits: &SandboxLimits,
    max_output_bytes: u64,
) -> Result<Job, ApiError> {
    let id = match request.execution_id {
        Some(id) => {
            let fits = (1..=128).contains(&id.len())
                && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
            if !fits {
                return Err(ApiError::invalid(
                    "execution_id",
                    "must be 1 to 128 letters, digits, `_`, `-` or `.`",
                ));
            }
            id
        }
        None => format!("exec_{}", uuid::Uuid::new_v4().simple()),
    };
    if request.code.trim().is_empty() || request.code.len() > MAX_CODE_BYTES || request.code.contains('\0') {
        return Err(ApiError::invalid("code", "must be non-empty text of at most 1 MiB, without NUL"));
    }
    let language = match request.language.as_deref().unwrap_or("python") {
        "python" => Language::Python,
        "javascript" => Language::Javascript,
        "shell" | "bash" => Language::Bash,
        other => {
            return Err(ApiError::invalid(
                "language",
                format!("{other:?} is not python, javascript or shell"),
            ))
        }
    };
    let event = match request.event {
        None | Some(Value::Null) => None,
        Some(event @ Value::Object(_)) => Some(event),
        Some(_) => return Err(ApiError::invalid("event", "must be a JSON object")),
    };
    let timeout = match event.as_ref().and_then(|e| e.get("__timeout")) {
        Some(seconds) => seconds_in_range("event.__timeout", seconds.as_f64())?,
        None => match request.timeout {
            Some(seconds) => seconds_in_range("timeout", Some(seconds))?,
            None => settings.default_timeout,
        },
    };
    for (name, value) in &request.env_vars {
        if name.is_empty() || name.contains(['=', '\0']) || value.contains('\0') {
            return Err(ApiError::invalid("env_vars", format!("{name:?} is not a valid variable")));
        }
    }
    // Shell has no handler: its event, if any, arrives on stdin as JSON.
    let (handler, stdin, event) = match (language, event) {
        (Language::Bash, Some(event)) => (false, Some(event.to_string()), None),
        (_, event) => (event.is_some(), None, event),
    };
    let mut limits = default_limits.clone();
    if let Some(memory) = settings.memory_bytes {
        limits.memory_bytes = memory;
    }
    let shot = OneShot {
        language,
        code: Some(request.code),
        files: Vec::new(),
        entrypoint: None,
        stdin,
        env: request.env_vars,
        limits,
        timeout: Some(timeout),
        max_output_bytes,
        event,
        network: NetworkPolicy::default(),
    };
    Ok(Job { id, handler, shot })
}

fn seconds_in_range(field: &str, seconds: Option<f64>) -> Result<Duration, ApiError> {
    match seconds {
        Some(s) if s > 0.0 && s <= MAX_TIMEOUT_SECONDS => Ok(Duration::from_secs_f64(s)),
        _ => Err(ApiError::invalid(field, "must be a number of seconds above 0, at most 86400")),
    }
}

/// How an execution ended.
enum Ended {
    Ran(Box<CodeRunView>),
    /// It could not start: the registry code and the reason.
    NotRun(&'static str, String),
}

/// Run `job` with heartbeats, then keep and deliver its result.
async fn run(state: AppState, running: Running, owner: Option<String>, job: Job) {
    let started = Instant::now();
    let settings = &state.front_doors.executor;
    tracing::info!(execution_id = %job.id, language = job.shot.language.as_str(), "execution started");
    let heartbeat = settings.control_plane.as_ref().map(|cp| {
        let url = deliver::heartbeat_url(cp, &job.id);
        let token = settings.control_plane_token.clone();
        tokio::spawn(deliver::heartbeats(url, token, job.id.clone(), started, settings.heartbeat_interval))
    });
    let id = job.id.clone();
    let ended = run_once(&state, owner.as_deref(), job).await;
    if let Some(heartbeat) = heartbeat {
        heartbeat.abort();
    }
    let payload = report(&id, ended, started.elapsed());
    tracing::info!(execution_id = %id, status = %payload["status"],
                   duration_ms = %payload["metrics"]["duration_ms"], "execution ended");
    deliver::keep_and_deliver(&state, &id, payload);
    // Only now, with the result in the outbox, may the same id be accepted again.
    drop(running);
}

async fn run_once(state: &AppState, owner: Option<&str>, mut job: Job) -> Ended {
    if let Some(root) = state.front_doors.executor.workspace.clone() {
        match tokio::task::spawn_blocking(move || workspace::read(&root)).await {
            Ok(Ok(files)) => job.shot.files = files,
            Ok(Err(message)) => return Ended::NotRun("HOST_IO_FAILED", message),
            Err(e) => return Ended::NotRun("HOST_IO_FAILED", format!("cannot read WORKSPACE_PATH: {e}")),
        }
    }
    match state.runtime.run_once(owner, job.shot).await {
        Ok((sandbox_id, events)) => {
            Ended::Ran(Box::new(CodeRunView::new(sandbox_id, CodeResult::collect(events).await, job.handler)))
        }
        Err(e) => {
            let e = ApiError::from(e);
            Ended::NotRun(e.code, e.message)
        }
    }
}

/// The result as the control plane receives it: the Sandbox Executor's fields (`status` one of
/// `success`, `failed`, `timeout`, `crashed`; `execution_time` in seconds; `return_value`;
/// `metrics`), with the execution id and the error.
fn report(id: &str, ended: Ended, elapsed: Duration) -> Value {
    let run = match ended {
        Ended::Ran(run) => *run,
        Ended::NotRun(code, message) => {
            let ms = elapsed.as_millis() as u64;
            return json!({
                "execution_id": id, "status": "failed", "stdout": "", "stderr": message,
                "exit_code": -1, "execution_time": ms as f64 / 1000.0, "return_value": null,
                "error": {"name": code, "value": message, "traceback": []},
                "metrics": {"duration_ms": ms, "cpu_time_ms": null, "peak_memory_mb": null,
                            "io_read_bytes": null, "io_write_bytes": null},
                "artifacts": [], "output_truncated": false,
            });
        }
    };
    let end = &run.end;
    let status = match end.status.as_str() {
        "ok" => "success",
        "error" | "failed" => "failed",
        "timeout" => "timeout",
        _ => "crashed",
    };
    let exit_code = end.exit_code.unwrap_or(match status {
        "success" => 0,
        "failed" => 1,
        _ => -1,
    });
    let error = match (&run.error, status) {
        (Some(e), _) => json!({"name": e.name, "value": e.value, "traceback": e.traceback}),
        (None, "success") => Value::Null,
        (None, _) => json!({
            "name": end.code.clone().unwrap_or_else(|| error_name(&end.status).to_owned()),
            "value": end.message.clone().unwrap_or_else(|| format!("exit code {exit_code}")),
            "traceback": [],
        }),
    };
    let usage = &end.usage;
    json!({
        "execution_id": id,
        "status": status,
        "stdout": run.stdout,
        "stderr": run.stderr,
        "exit_code": exit_code,
        "execution_time": usage.duration_ms as f64 / 1000.0,
        "return_value": run.result,
        "error": error,
        "metrics": {
            "duration_ms": usage.duration_ms,
            "cpu_time_ms": usage.cpu_ms,
            "peak_memory_mb": usage.max_rss_bytes as f64 / (1u64 << 20) as f64,
            "io_read_bytes": null,
            "io_write_bytes": null,
        },
        "artifacts": [],
        "output_truncated": end.output_truncated,
    })
}

/// The error's name when the run raised none: a script's exit, a timeout, a run that failed.
fn error_name(status: &str) -> &'static str {
    match status {
        "timeout" => "TimeoutError",
        "error" => "NonZeroExit",
        "failed" => "ExecutionFailed",
        _ => "ExecutionCrashed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(body: Value) -> Result<Job, ApiError> {
        let request: ExecuteRequest = serde_json::from_value(body).unwrap();
        let defaults = SandboxLimits {
            memory_bytes: 256 << 20,
            max_pids: 128,
            cpu_millis: None,
            max_open_files: 1024,
            max_file_bytes: None,
            tmp_size_bytes: 64 << 20,
        };
        let settings = Settings { memory_bytes: Some(64 << 20), ..Settings::default() };
        check(request, &settings, &defaults, 1 << 20)
    }

    #[test]
    fn an_event_makes_a_handler_and_its_timeout_wins() {
        let job =
            request(json!({"code": "def handler(e): return e", "event": {"__timeout": 2.5}, "timeout": 9,
                                 "execution_id": "exec_1", "session_id": "s", "unknown": 1}))
            .unwrap();
        assert_eq!((job.id.as_str(), job.handler), ("exec_1", true));
        assert_eq!(job.shot.timeout, Some(Duration::from_millis(2500)));
        assert_eq!(job.shot.limits.memory_bytes, 64 << 20);

        let job = request(json!({"code": "print(1)", "timeout": 3})).unwrap();
        assert!(!job.handler && job.id.starts_with("exec_"));
        assert_eq!(job.shot.timeout, Some(Duration::from_secs(3)));
        assert_eq!(request(json!({"code": "x"})).unwrap().shot.timeout, Some(Duration::from_secs(300)));
    }

    #[test]
    fn shell_gets_its_event_on_stdin() {
        let job = request(json!({"code": "cat", "language": "shell", "event": {"a": 1}})).unwrap();
        assert_eq!((job.handler, job.shot.language, job.shot.event), (false, Language::Bash, None));
        assert_eq!(job.shot.stdin.as_deref(), Some(r#"{"a":1}"#));
    }

    #[test]
    fn bad_input_names_its_field() {
        for (body, field) in [
            (json!({"code": ""}), "code"),
            (json!({"code": "x", "language": "cobol"}), "language"),
            (json!({"code": "x", "timeout": 0}), "timeout"),
            (json!({"code": "x", "timeout": 100000}), "timeout"),
            (json!({"code": "x", "event": {"__timeout": "soon"}}), "event.__timeout"),
            (json!({"code": "x", "event": [1]}), "event"),
            (json!({"code": "x", "execution_id": "../x"}), "execution_id"),
            (json!({"code": "x", "env_vars": {"A=B": "1"}}), "env_vars"),
        ] {
            let e = request(body.clone()).err().unwrap_or_else(|| panic!("{body} was accepted"));
            assert_eq!(e.code, "INVALID_ARGUMENT");
            assert!(e.message.contains(field), "{body}: {}", e.message);
        }
    }

    #[test]
    fn at_most_the_allowed_number_run_and_an_id_runs_once() {
        let executions = Executions::default();
        let Admission::Start(first) = executions.admit("a", 1) else { panic!("a did not start") };
        assert!(matches!(executions.admit("a", 1), Admission::AlreadyRunning));
        assert!(matches!(executions.admit("b", 1), Admission::Busy));
        drop(first);
        assert_eq!(executions.count(), 0);
        assert!(matches!(executions.admit("b", 1), Admission::Start(_)));
    }

    #[test]
    fn a_run_that_could_not_start_is_a_failed_result() {
        let report = report("e", Ended::NotRun("SANDBOX_LIMIT_REACHED", "full".to_owned()), Duration::ZERO);
        assert_eq!((report["status"].as_str(), report["exit_code"].as_i64()), (Some("failed"), Some(-1)));
        assert_eq!(report["error"]["name"], "SANDBOX_LIMIT_REACHED");
    }
}
