//! The lifecycle API, `/opensandbox/v1/sandboxes...`: each route one runtime call.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use airlock_runtime::{now_ms, NewSandbox, SandboxFilter, SandboxLimits, MAX_LINK_SECONDS};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::access::TOKEN_HEADER;
use super::error::OsError;
use super::model::{parse_rfc3339, parse_state, rfc3339, CreateRequest, ListView, Pagination, SandboxView};
use super::quantity::{cpu_millis, memory_bytes};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::parse;
use crate::routes::sandboxes::check_pairs;
use crate::state::AppState;

/// The port OpenSandbox clients ask an endpoint for to reach execd.
pub const EXECD_PORT: u16 = 44772;
/// The port OpenSandbox clients ask an endpoint for to reach the egress policy API.
pub const EGRESS_PORT: u16 = 18080;
/// Metadata keys OpenSandbox reserves.
const RESERVED_PREFIX: &str = "opensandbox.io/";

fn caller(caller: Result<Caller, ApiError>) -> Result<Caller, OsError> {
    caller.map_err(OsError::from)
}

fn unsupported(field: &str, what: &str) -> OsError {
    OsError(ApiError::new(
        "INVALID_ARGUMENT",
        format!("{field} is not supported: {what}"),
        format!("leave out `{field}`; docs/opensandbox.md lists what Airlock supports"),
    ))
}

fn limits(base: SandboxLimits, resources: &BTreeMap<String, String>) -> Result<SandboxLimits, OsError> {
    let mut limits = base;
    for (key, value) in resources {
        let field = format!("resourceLimits.{key}");
        match key.as_str() {
            "cpu" => limits.cpu_millis = Some(cpu_millis(&field, value)?),
            "memory" => limits.memory_bytes = memory_bytes(&field, value)?,
            "gpu" | "nvidia.com/gpu" if value.trim() == "0" => {}
            _ => return Err(unsupported(&field, "Airlock limits cpu and memory")),
        }
    }
    Ok(limits)
}

/// The template for `image`, from the configured map; the default one for other images unless
/// the server only takes mapped images.
fn template_for(state: &AppState, image: &str) -> Result<String, OsError> {
    let settings = &state.front_doors.opensandbox;
    match settings.images.get(image) {
        Some(template) => Ok(template.clone()),
        None if settings.only_mapped_images => Err(OsError(ApiError::new(
            "IMAGE_NOT_MAPPED",
            format!("image {image:?} is not one this server offers"),
            "use an image named in the server's [server.opensandbox.images]",
        ))),
        None => Ok(airlock_runtime::DEFAULT_TEMPLATE.to_owned()),
    }
}

/// `POST /v1/sandboxes`: create a sandbox and start its entrypoint; it runs when answered.
pub async fn create(
    State(state): State<AppState>,
    who: Result<Caller, ApiError>,
    body: Bytes,
) -> Result<(StatusCode, Json<SandboxView>), OsError> {
    let who = caller(who)?;
    let request = parse::<CreateRequest>(&body)?;
    for (field, present) in [
        ("volumes", request.volumes.as_ref().is_some_and(|v| !v.is_empty())),
        ("snapshotId", request.snapshot_id.is_some()),
        ("templateId", request.template_id.is_some()),
        ("credentialProxy", request.credential_proxy.is_some()),
        ("lifecycle", request.lifecycle.is_some()),
    ] {
        if present {
            return Err(unsupported(field, "Airlock sandboxes start from a template on the host's /usr"));
        }
    }
    let image = request.image.map(|i| i.uri).ok_or_else(|| OsError::invalid("image", "name an image"))?;
    let template_name = template_for(&state, &image)?;
    let config = state.runtime.config();
    let template = config.template(&template_name).ok_or_else(|| {
        OsError::invalid("image", format!("its template {template_name:?} is not configured"))
    })?;
    check_pairs("env", &request.env, |k| !k.is_empty() && !k.contains('=') && !k.contains('\0'))?;
    check_pairs("metadata", &request.metadata, |k| !k.is_empty() && k.len() <= 256)?;
    if request.entrypoint.iter().any(|a| a.contains('\0')) {
        return Err(OsError::invalid("entrypoint", "an argument holds a NUL byte"));
    }
    let ttl = match request.timeout {
        Some(0) => return Err(OsError::invalid("timeout", "must be at least 1 second, or null for none")),
        Some(seconds) => Some(Duration::from_secs(seconds)),
        None if config.max_ttl.is_some() => {
            return Err(OsError::invalid("timeout", "this server does not allow sandboxes without expiry"))
        }
        None => None,
    };
    let network = match &request.network_policy {
        Some(policy) => policy.to_policy("networkPolicy")?,
        None => airlock_runtime::egress::policy::NetworkPolicy::none(),
    };
    let mut env = template.env;
    env.extend(request.env);
    let new = NewSandbox {
        limits: limits(template.limits, &request.resource_limits)?,
        env,
        metadata: request.metadata,
        ttl,
        workdir: template.workdir,
        network,
        template: template_name,
        image: Some(image),
        entrypoint: request.entrypoint,
    };
    let record = state.runtime.create(who.owner(), new).await?;
    Ok((StatusCode::ACCEPTED, Json(SandboxView::of(record))))
}

/// `GET /v1/sandboxes?state=Running&state=Paused&metadata=k%3Dv&page=1&pageSize=20`.
pub async fn list(
    State(state): State<AppState>,
    who: Result<Caller, ApiError>,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<Json<ListView>, OsError> {
    let who = caller(who)?;
    let mut filter = SandboxFilter { limit: usize::MAX, ..SandboxFilter::default() };
    let (mut page, mut page_size) = (1usize, 20usize);
    for (key, value) in &query {
        match key.as_str() {
            "state" => filter.states.push(
                parse_state(value).ok_or_else(|| OsError::invalid("state", format!("no state {value:?}")))?,
            ),
            "metadata" => filter.metadata.extend(form_urlencoded::parse(value.as_bytes()).into_owned()),
            "page" => {
                page = value
                    .parse()
                    .ok()
                    .filter(|&p| p >= 1)
                    .ok_or_else(|| OsError::invalid("page", "not 1 or more"))?
            }
            "pageSize" => {
                page_size = value
                    .parse()
                    .ok()
                    .filter(|&p| (1..=500).contains(&p))
                    .ok_or_else(|| OsError::invalid("pageSize", "not 1 to 500"))?
            }
            _ => {}
        }
    }
    let all = state.runtime.list(who.owner(), &filter).items;
    let total_items = all.len();
    let items: Vec<SandboxView> = all
        .into_iter()
        .skip((page - 1).saturating_mul(page_size))
        .take(page_size)
        .map(SandboxView::of)
        .collect();
    let total_pages = total_items.div_ceil(page_size);
    let pagination =
        Pagination { page, page_size, total_items, total_pages, has_next_page: page < total_pages };
    Ok(Json(ListView { items, pagination }))
}

/// `GET /v1/sandboxes/{sandbox_id}`.
pub async fn get(
    State(state): State<AppState>,
    who: Result<Caller, ApiError>,
    Path(id): Path<String>,
) -> Result<Json<SandboxView>, OsError> {
    Ok(Json(SandboxView::of(state.runtime.get(caller(who)?.owner(), &id)?)))
}

/// `DELETE /v1/sandboxes/{sandbox_id}`.
pub async fn delete(
    State(state): State<AppState>,
    who: Result<Caller, ApiError>,
    Path(id): Path<String>,
) -> Result<StatusCode, OsError> {
    state.runtime.delete(caller(who)?.owner(), &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/sandboxes/{sandbox_id}/pause`: every process stops; the files stay.
pub async fn pause(
    State(state): State<AppState>,
    who: Result<Caller, ApiError>,
    Path(id): Path<String>,
) -> Result<StatusCode, OsError> {
    state.runtime.pause(caller(who)?.owner(), &id).await?;
    Ok(StatusCode::ACCEPTED)
}

/// `POST /v1/sandboxes/{sandbox_id}/resume`: a fresh agent on the same files, and the
/// entrypoint started again.
pub async fn resume(
    State(state): State<AppState>,
    who: Result<Caller, ApiError>,
    Path(id): Path<String>,
) -> Result<StatusCode, OsError> {
    state.runtime.resume(caller(who)?.owner(), &id).await?;
    Ok(StatusCode::ACCEPTED)
}

/// The new expiry.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Renewed {
    expires_at: String,
}

/// `POST /v1/sandboxes/{sandbox_id}/renew-expiration` with `{"expiresAt": RFC 3339}`.
pub async fn renew(
    State(state): State<AppState>,
    who: Result<Caller, ApiError>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Renewed>, OsError> {
    let owner = caller(who)?.owner;
    let request = parse::<super::model::RenewRequest>(&body)?;
    let at = parse_rfc3339("expiresAt", &request.expires_at)?;
    let ttl = at
        .duration_since(SystemTime::now())
        .map_err(|_| OsError::invalid("expiresAt", "must be in the future"))?;
    let record = state.runtime.renew(owner.as_deref(), &id, ttl)?;
    let expires_at = record.expires_ms.map(rfc3339).unwrap_or_default();
    Ok(Json(Renewed { expires_at }))
}

/// `PATCH /v1/sandboxes/{sandbox_id}/metadata`: a JSON merge patch of the metadata.
pub async fn patch_metadata(
    State(state): State<AppState>,
    who: Result<Caller, ApiError>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<SandboxView>, OsError> {
    let owner = caller(who)?.owner;
    let patch = parse::<BTreeMap<String, Option<String>>>(&body)?;
    for (key, value) in &patch {
        if key.starts_with(RESERVED_PREFIX) {
            return Err(OsError::invalid(key, format!("keys starting with {RESERVED_PREFIX} are reserved")));
        }
        if key.is_empty() || key.len() > 256 || value.as_deref().is_some_and(|v| v.contains('\0')) {
            return Err(OsError::invalid(&format!("metadata.{key}"), "is not an allowed name or value"));
        }
    }
    Ok(Json(SandboxView::of(state.runtime.patch_metadata(owner.as_deref(), &id, &patch)?)))
}

/// Where to reach a port of a sandbox.
#[derive(Debug, Serialize)]
pub struct EndpointView {
    endpoint: String,
    headers: BTreeMap<String, String>,
}

/// The query of an endpoint request.
#[derive(Debug, Deserialize)]
pub struct EndpointQuery {
    /// For a signed endpoint (OSEP-0011): when it stops working, in Unix seconds.
    expires: Option<String>,
}

/// `GET /v1/sandboxes/{sandbox_id}/endpoints/{port}`: execd and the egress API are served by
/// this server for each sandbox; any other port is the server's ingress to that port, or with
/// `expires` a signed link to it that needs no key.
pub async fn endpoint(
    State(state): State<AppState>,
    who: Result<Caller, ApiError>,
    Path((id, port)): Path<(String, String)>,
    Query(query): Query<EndpointQuery>,
    headers: HeaderMap,
) -> Result<Json<EndpointView>, OsError> {
    let owner = caller(who)?.owner;
    let port: u16 =
        port.parse().ok().filter(|&p| p > 0).ok_or_else(|| OsError::invalid("port", "not 1 to 65535"))?;
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .ok_or_else(|| OsError::invalid("Host", "the request has no Host header"))?;
    let token = state.runtime.sandbox_token(owner.as_deref(), &id)?;
    let (endpoint, headers) = match (port, query.expires) {
        (EXECD_PORT | EGRESS_PORT, Some(_)) => {
            return Err(OsError::invalid(
                "expires",
                "execd and egress endpoints are opened by their access token",
            ))
        }
        (EXECD_PORT, None) => {
            (format!("{host}/opensandbox/execd/{id}"), BTreeMap::from([(TOKEN_HEADER.to_owned(), token)]))
        }
        (EGRESS_PORT, None) => {
            (format!("{host}/opensandbox/egress/{id}"), BTreeMap::from([(TOKEN_HEADER.to_owned(), token)]))
        }
        (port, Some(expires)) => {
            let seconds = expires
                .trim()
                .parse::<u64>()
                .ok()
                .and_then(|at| at.checked_sub(now_ms() as u64 / 1000))
                .filter(|s| (1..=MAX_LINK_SECONDS).contains(s))
                .ok_or_else(|| {
                    OsError::invalid(
                        "expires",
                        "must be a time in the future, at most a week away, in Unix seconds",
                    )
                })?;
            let (token, _) = state.runtime.create_ingress_link(owner.as_deref(), &id, port, seconds)?;
            (format!("{host}/v1/links/{token}"), BTreeMap::new())
        }
        (port, None) => (format!("{host}/v1/sandboxes/{id}/ports/{port}"), BTreeMap::new()),
    };
    Ok(Json(EndpointView { endpoint, headers }))
}
