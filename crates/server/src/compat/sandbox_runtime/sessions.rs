//! Sessions: client-named sandboxes. Create, status, delete, and [`open`], which the other
//! routes use to find a session's running sandbox (resuming it after a server restart, and
//! creating it on first use where the Sandbox Runtime did).

use std::collections::BTreeMap;
use std::time::Duration;

use airlock_runtime::egress::policy::{Action, NetworkPolicy};
use airlock_runtime::{NewSandbox, SandboxFilter, SandboxRecord, SandboxState, DEFAULT_TEMPLATE};
use axum::extract::State;
use axum::response::Response;
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};

use super::envelope::{check_name, ok, Body, SeError, Session};
use crate::api::rfc3339;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

/// The metadata key that holds a session's name.
pub(super) const SESSION_KEY: &str = "se.session";

/// The metadata key that holds a session's own default run timeout, in seconds.
const TIMEOUT_KEY: &str = "se.timeout_seconds";

/// Longest run timeout, in seconds.
pub(super) const MAX_TIMEOUT_SECONDS: f64 = 86_400.0;

/// Held while a name is looked up and its sandbox made, so that two first uses of one name
/// make one session.
static NAMING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What a session name stands for, for one caller.
enum Lookup {
    /// A sandbox that has not ended (running, paused, starting or stopping).
    Live(SandboxRecord),
    /// The newest sandbox of the name ended by its time to live.
    Expired(SandboxRecord),
    /// The newest sandbox of the name failed (it could not start, or its agent died).
    Failed(SandboxRecord),
    /// None, or one that was deleted.
    Missing,
}

fn lookup(state: &AppState, owner: Option<&str>, name: &str) -> Lookup {
    let filter = SandboxFilter {
        metadata: BTreeMap::from([(SESSION_KEY.to_owned(), name.to_owned())]),
        limit: 10_000,
        ..SandboxFilter::default()
    };
    // Oldest first: the newest sandbox of the name speaks for it.
    let records = state.runtime.list(owner, &filter).items;
    if let Some(live) = records.iter().rev().find(|r| !r.status.state.is_final()) {
        return Lookup::Live(live.clone());
    }
    match records.into_iter().next_back() {
        Some(r) if r.status.reason == "expired" => Lookup::Expired(r),
        Some(r) if r.status.state == SandboxState::Failed => Lookup::Failed(r),
        _ => Lookup::Missing,
    }
}

fn not_found(name: &str) -> SeError {
    SeError::new(
        "SESSION_NOT_FOUND",
        format!("no session {name:?}"),
        "create it with POST /workspace/se/session/{session_id}; sessions are only visible to the API \
         key that created them",
    )
}

fn expired(name: &str, record: &SandboxRecord) -> SeError {
    SeError::new(
        "SESSION_EXPIRED",
        format!("session {name:?} ({}) ended when its time to live ran out", record.id),
        "create it again with POST /workspace/se/session/{session_id}; raise SANDBOX_SESSION_TTL or send \
         `ttl` to keep sessions longer",
    )
}

fn failed(name: &str, record: &SandboxRecord) -> SeError {
    SeError::new(
        "ISOLATION_FAILED",
        format!("session {name:?} ({}) failed: {}", record.id, record.status.message),
        "delete it with DELETE /workspace/se/session/{session_id} and create it again; `airlock doctor` \
         on the server tells what a sandbox lacks",
    )
}

/// The running sandbox of a session: a paused one (after a server restart) is resumed, and a
/// missing one is created with the server's settings when `create` is set.
pub(super) async fn open(
    state: &AppState,
    session: &Session,
    create: bool,
) -> Result<SandboxRecord, SeError> {
    let (owner, name) = (session.owner(), session.name.as_str());
    let mut found = lookup(state, owner, name);
    // Only a first use waits for the lock, and looks again under it.
    let naming = match found {
        Lookup::Missing if create => {
            let held = NAMING.lock().await;
            found = lookup(state, owner, name);
            Some(held)
        }
        _ => None,
    };
    let record = match found {
        Lookup::Live(record) => record,
        Lookup::Expired(record) => return Err(expired(name, &record)),
        Lookup::Failed(record) => return Err(failed(name, &record)),
        Lookup::Missing if create => make(state, owner, name, SessionOptions::default()).await?,
        Lookup::Missing => return Err(not_found(name)),
    };
    drop(naming);
    if record.status.state == SandboxState::Paused {
        return Ok(state.runtime.resume(owner, &record.id).await?);
    }
    Ok(record)
}

/// What a client may ask of a new session; the server's `SANDBOX_*` settings fill the rest.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SessionOptions {
    /// The name, for `POST /workspace/se/session`; generated when left out.
    session_id: Option<String>,
    /// Network through the egress proxy; only where the server allows it.
    allow_network: Option<bool>,
    /// CPU in cores.
    cpu_quota: Option<f64>,
    /// Memory in KB.
    memory_limit: Option<u64>,
    /// The session's default run timeout, in seconds.
    timeout: Option<f64>,
    /// Time to live in seconds.
    ttl: Option<u64>,
    /// Variables set for everything the session runs.
    #[serde(default)]
    env: BTreeMap<String, String>,
    /// The Sandbox Runtime's tmpfs size: accepted so that its clients work, and not used (a
    /// session's workspace is on the server's disk).
    #[serde(rename = "size")]
    _size: Option<IgnoredAny>,
}

/// Make the sandbox of a new session.
async fn make(
    state: &AppState,
    owner: Option<&str>,
    name: &str,
    options: SessionOptions,
) -> Result<SandboxRecord, SeError> {
    let settings = &state.front_doors.sandbox_runtime;
    let mut limits = state.runtime.config().default_limits.clone();
    if let Some(kb) = options.memory_limit {
        let bytes = kb.checked_mul(1024).ok_or_else(|| ApiError::invalid("memory_limit", "too large"))?;
        limits.memory_bytes = bytes;
    } else if let Some(bytes) = settings.memory_bytes {
        limits.memory_bytes = bytes;
    }
    match options.cpu_quota {
        Some(cores) if cores > 0.0 && cores.is_finite() && cores <= 1024.0 => {
            limits.cpu_millis = Some((cores * 1000.0).round().max(1.0) as u64)
        }
        Some(_) => return Err(ApiError::invalid("cpu_quota", "must be a number of cores above 0").into()),
        None => limits.cpu_millis = settings.cpu_millis.or(limits.cpu_millis),
    }
    let network = match options.allow_network.unwrap_or(settings.allow_network) {
        true if !settings.allow_network => {
            return Err(SeError::new(
                "NETWORK_DISABLED",
                "this server gives sessions no network: `allow_network` cannot be true",
                "leave `allow_network` out, or let the operator set SANDBOX_ALLOW_NETWORK=true",
            ))
        }
        // Everything through the egress proxy, whose protected ranges (metadata services,
        // loopback, the server itself) stay closed.
        true => NetworkPolicy::allowlist(Action::Allow, Vec::new()),
        false => NetworkPolicy::none(),
    };
    let mut metadata = BTreeMap::from([(SESSION_KEY.to_owned(), name.to_owned())]);
    if let Some(seconds) = options.timeout {
        metadata.insert(TIMEOUT_KEY.to_owned(), timeout_seconds("timeout", seconds)?.to_string());
    }
    if options.env.keys().any(|k| k.is_empty() || k.contains('=') || k.contains('\0'))
        || options.env.values().any(|v| v.contains('\0'))
    {
        return Err(ApiError::invalid("env", "names must be non-empty without '=' and no NUL bytes").into());
    }
    let ttl = match options.ttl {
        Some(0) => return Err(ApiError::invalid("ttl", "must be above 0").into()),
        Some(seconds) => Some(Duration::from_secs(seconds)),
        None => settings.session_ttl,
    };
    let new = NewSandbox {
        limits,
        env: options.env,
        metadata,
        ttl,
        workdir: "/workspace".to_owned(),
        network,
        template: DEFAULT_TEMPLATE.to_owned(),
        image: None,
        entrypoint: Vec::new(),
    };
    Ok(state.runtime.create(owner, new).await?)
}

/// A run timeout in seconds, checked.
pub(super) fn timeout_seconds(field: &str, seconds: f64) -> Result<f64, SeError> {
    if seconds > 0.0 && seconds <= MAX_TIMEOUT_SECONDS {
        Ok(seconds)
    } else {
        Err(ApiError::invalid(field, format!("must be seconds above 0, at most {MAX_TIMEOUT_SECONDS}"))
            .into())
    }
}

/// How long a run in this session may take: the request's timeout, else the session's own,
/// else `SANDBOX_TIMEOUT_SECONDS`.
pub(super) fn run_timeout(
    state: &AppState,
    record: &SandboxRecord,
    asked: Option<f64>,
) -> Result<Duration, SeError> {
    if let Some(seconds) = asked {
        return Ok(Duration::from_secs_f64(timeout_seconds("timeout", seconds)?));
    }
    let own = record.metadata.get(TIMEOUT_KEY).and_then(|s| s.parse::<f64>().ok());
    Ok(own.map_or(state.front_doors.sandbox_runtime.timeout, Duration::from_secs_f64))
}

/// A session as its status route shows it.
#[derive(Debug, Serialize)]
struct SessionView {
    session_id: String,
    /// The Airlock sandbox behind it, for the native API.
    sandbox_id: String,
    /// `active` while it runs; otherwise the sandbox's state.
    status: &'static str,
    exists: bool,
    created_at: String,
    expires_at: Option<String>,
    /// In KB, as the Sandbox Runtime counts it.
    memory_limit: u64,
    /// In cores; none for no quota.
    cpu_quota: Option<f64>,
    allow_network: bool,
    /// The session's default run timeout in seconds.
    timeout: f64,
}

fn view(state: &AppState, name: &str, record: &SandboxRecord) -> SessionView {
    let state_name = match record.status.state {
        SandboxState::Running => "active",
        other => other.as_str(),
    };
    let timeout = run_timeout(state, record, None).map(|t| t.as_secs_f64()).unwrap_or_default();
    SessionView {
        session_id: name.to_owned(),
        sandbox_id: record.id.clone(),
        status: state_name,
        exists: true,
        created_at: rfc3339(record.created_ms),
        expires_at: record.expires_ms.map(rfc3339),
        memory_limit: record.limits.memory_bytes / 1024,
        cpu_quota: record.limits.cpu_millis.map(|m| m as f64 / 1000.0),
        allow_network: record.network.default_action == Action::Allow,
        timeout,
    }
}

/// `GET /workspace/se/healthy`.
pub(super) async fn healthy() -> Response {
    ok(serde_json::json!({ "status": "ok" }))
}

/// `POST /workspace/se/session/{session_id}`: a new session; one that exists is refused.
pub(super) async fn create(
    State(state): State<AppState>,
    session: Session,
    Body(options): Body<SessionOptions>,
) -> Result<Response, SeError> {
    if options.session_id.as_ref().is_some_and(|named| *named != session.name) {
        return Err(ApiError::invalid("session_id", "differs from the one in the path").into());
    }
    create_named(&state, session.owner(), &session.name, options).await
}

/// `POST /workspace/se/session`: a new session named by `session_id` in the body, or with a
/// generated name.
pub(super) async fn create_unnamed(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    Body(options): Body<SessionOptions>,
) -> Result<Response, SeError> {
    let caller = caller?;
    let name = match &options.session_id {
        Some(name) => name.clone(),
        None => format!("se-{}", uuid::Uuid::new_v4().simple()),
    };
    check_name(&name)?;
    create_named(&state, caller.owner(), &name, options).await
}

async fn create_named(
    state: &AppState,
    owner: Option<&str>,
    name: &str,
    options: SessionOptions,
) -> Result<Response, SeError> {
    let _naming = NAMING.lock().await;
    if let Lookup::Live(record) = lookup(state, owner, name) {
        return Err(SeError::new(
            "SESSION_EXISTS",
            format!("session {name:?} already exists ({})", record.id),
            "use it, or delete it first with DELETE /workspace/se/session/{session_id}",
        ));
    }
    let record = make(state, owner, name, options).await?;
    Ok(ok(view(state, name, &record)))
}

/// `GET /workspace/se/session/{session_id}` and `GET /workspace/se/status/{session_id}`.
pub(super) async fn status(State(state): State<AppState>, session: Session) -> Result<Response, SeError> {
    match lookup(&state, session.owner(), &session.name) {
        Lookup::Live(record) | Lookup::Failed(record) => Ok(ok(view(&state, &session.name, &record))),
        Lookup::Expired(record) => Err(expired(&session.name, &record)),
        Lookup::Missing => Err(not_found(&session.name)),
    }
}

/// `DELETE /workspace/se/session/{session_id}`: stop it and remove its files.
pub(super) async fn delete(State(state): State<AppState>, session: Session) -> Result<Response, SeError> {
    let record = match lookup(&state, session.owner(), &session.name) {
        Lookup::Live(record) | Lookup::Failed(record) => record,
        Lookup::Expired(record) => return Err(expired(&session.name, &record)),
        Lookup::Missing => return Err(not_found(&session.name)),
    };
    state.runtime.delete(session.owner(), &record.id).await?;
    Ok(ok(serde_json::json!({
        "session_id": session.name,
        "sandbox_id": record.id,
        "message": "Session closed successfully",
    })))
}
