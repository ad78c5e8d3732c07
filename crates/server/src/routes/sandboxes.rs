//! `/v1/sandboxes`: create, get, list, delete, renew, pause, resume.

use std::time::Duration;

use airlock_runtime::{NewSandbox, SandboxFilter, SandboxState, DEFAULT_TEMPLATE};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;

use crate::api::{CreateSandbox, RenewSandbox, SandboxList, SandboxView};
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::extract::ApiJson;
use crate::state::AppState;

/// Largest page of a listing.
const MAX_PAGE: usize = 500;

/// Create a sandbox and wait until it runs.
#[utoipa::path(post, path = "/v1/sandboxes", tag = "sandboxes", request_body = CreateSandbox,
    responses((status = 201, body = SandboxView), (status = 400, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateSandbox>,
) -> Result<(StatusCode, Json<SandboxView>), ApiError> {
    let config = state.runtime.config();
    let limits = body.limits.over(&config.default_limits)?;
    let workdir = body.workdir.unwrap_or_else(|| "/workspace".to_owned());
    if !workdir.starts_with('/') {
        return Err(ApiError::invalid("workdir", "must be an absolute path inside the sandbox"));
    }
    check_pairs("env", &body.env, |k| !k.is_empty() && !k.contains('=') && !k.contains('\0'))?;
    check_pairs("metadata", &body.metadata, |k| !k.is_empty() && k.len() <= 256)?;
    let ttl = match body.ttl_seconds {
        None => config.default_ttl,
        Some(0) if config.max_ttl.is_some() => {
            return Err(ApiError::invalid(
                "ttl_seconds",
                "this server does not allow sandboxes without expiry",
            ))
        }
        Some(0) => None,
        Some(s) => Some(Duration::from_secs(s)),
    };
    let network = body.network.into_policy("network")?;
    let new = NewSandbox {
        limits,
        env: body.env,
        metadata: body.metadata,
        ttl,
        workdir,
        network,
        template: DEFAULT_TEMPLATE.to_owned(),
        image: None,
        entrypoint: Vec::new(),
    };
    let record = state.runtime.create(caller.owner(), new).await?;
    Ok((StatusCode::CREATED, Json(record.into())))
}

/// Refuse a map with a key `key_ok` rejects or a value with a NUL byte, naming the entry.
pub(crate) fn check_pairs(
    field: &str,
    pairs: &std::collections::BTreeMap<String, String>,
    key_ok: impl Fn(&str) -> bool,
) -> Result<(), ApiError> {
    for (k, v) in pairs {
        if !key_ok(k) || v.contains('\0') {
            return Err(ApiError::invalid(&format!("{field}.{k}"), "is not an allowed name or value"));
        }
    }
    Ok(())
}

/// A sandbox.
#[utoipa::path(get, path = "/v1/sandboxes/{id}", tag = "sandboxes",
    responses((status = 200, body = SandboxView), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<SandboxView>, ApiError> {
    Ok(Json(state.runtime.get(caller.owner(), &id)?.into()))
}

/// The caller's sandboxes, oldest first. Query: `state=running,paused` (repeatable),
/// `metadata.KEY=VALUE` (each must match), `limit` (1 to 500, default 100), `after` (the
/// `next` of the previous page).
#[utoipa::path(get, path = "/v1/sandboxes", tag = "sandboxes",
    params(("state" = Option<String>, Query, description = "states, comma-separated"),
           ("limit" = Option<usize>, Query), ("after" = Option<String>, Query)),
    responses((status = 200, body = SandboxList), (status = 400, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<Json<SandboxList>, ApiError> {
    let mut filter = SandboxFilter { limit: 100, ..SandboxFilter::default() };
    for (key, value) in query {
        match key.as_str() {
            "state" => {
                for name in value.split(',').filter(|n| !n.is_empty()) {
                    let state = SandboxState::parse(name).ok_or_else(|| {
                        ApiError::invalid("state", format!("{name:?} is not one of pending, running, paused, stopping, terminated, failed"))
                    })?;
                    filter.states.push(state);
                }
            }
            "limit" => {
                filter.limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_PAGE).contains(n))
                    .ok_or_else(|| ApiError::invalid("limit", format!("must be 1 to {MAX_PAGE}")))?;
            }
            "after" => filter.after = Some(value),
            _ => match key.strip_prefix("metadata.") {
                Some(k) if !k.is_empty() => {
                    filter.metadata.insert(k.to_owned(), value);
                }
                _ => return Err(ApiError::invalid(&key, "is not a known query parameter")),
            },
        }
    }
    let page = state.runtime.list(caller.owner(), &filter);
    Ok(Json(SandboxList { items: page.items.into_iter().map(Into::into).collect(), next: page.next }))
}

/// Delete a sandbox: stop its processes and remove its workspace.
#[utoipa::path(delete, path = "/v1/sandboxes/{id}", tag = "sandboxes",
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.runtime.delete(caller.owner(), &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Set the sandbox's expiry to `ttl_seconds` from now.
#[utoipa::path(post, path = "/v1/sandboxes/{id}/renew", tag = "sandboxes", request_body = RenewSandbox,
    responses((status = 200, body = SandboxView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn renew(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<RenewSandbox>,
) -> Result<Json<SandboxView>, ApiError> {
    if body.ttl_seconds == 0 {
        return Err(ApiError::invalid("ttl_seconds", "must be above 0"));
    }
    let record = state.runtime.renew(caller.owner(), &id, Duration::from_secs(body.ttl_seconds))?;
    Ok(Json(record.into()))
}

/// Stop every process of the sandbox and keep its workspace. Memory state is not kept.
#[utoipa::path(post, path = "/v1/sandboxes/{id}/pause", tag = "sandboxes",
    responses((status = 200, body = SandboxView), (status = 409, body = ErrorBody)))]
pub async fn pause(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<SandboxView>, ApiError> {
    Ok(Json(state.runtime.pause(caller.owner(), &id).await?.into()))
}

/// Start a fresh agent on a paused sandbox's workspace.
#[utoipa::path(post, path = "/v1/sandboxes/{id}/resume", tag = "sandboxes",
    responses((status = 200, body = SandboxView), (status = 409, body = ErrorBody)))]
pub async fn resume(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<SandboxView>, ApiError> {
    Ok(Json(state.runtime.resume(caller.owner(), &id).await?.into()))
}
