//! `/v1/sandboxes/{id}/network` (the egress policy and its denials) and
//! `/v1/sandboxes/{id}/ports/{port}/...` (ingress to servers listening inside the sandbox).

use airlock_runtime::relay;
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use crate::api_network::{DenialList, NetworkPatchBody, NetworkPolicyBody};
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::extract::ApiJson;
use crate::state::AppState;

/// The sandbox's network policy.
#[utoipa::path(get, path = "/v1/sandboxes/{id}/network", tag = "network",
    responses((status = 200, body = NetworkPolicyBody), (status = 404, body = ErrorBody)))]
pub async fn get_policy(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<NetworkPolicyBody>, ApiError> {
    Ok(Json(state.runtime.network_policy(caller.owner(), &id)?.into()))
}

/// Replace the sandbox's network policy; new connections follow it at once. `none` and
/// `allowlist` switch freely; `host` is chosen at creation only.
#[utoipa::path(put, path = "/v1/sandboxes/{id}/network", tag = "network", request_body = NetworkPolicyBody,
    responses((status = 200, body = NetworkPolicyBody), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn put_policy(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<NetworkPolicyBody>,
) -> Result<Json<NetworkPolicyBody>, ApiError> {
    let policy = body.into_policy("")?;
    Ok(Json(state.runtime.set_network_policy(caller.owner(), &id, policy)?.into()))
}

/// Patch the sandbox's network policy: new rules go first, `remove` drops rules by target.
#[utoipa::path(patch, path = "/v1/sandboxes/{id}/network", tag = "network", request_body = NetworkPatchBody,
    responses((status = 200, body = NetworkPolicyBody), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn patch_policy(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<NetworkPatchBody>,
) -> Result<Json<NetworkPolicyBody>, ApiError> {
    let patch = body.into_patch()?;
    Ok(Json(state.runtime.patch_network_policy(caller.owner(), &id, &patch)?.into()))
}

/// Which denials to list.
#[derive(Debug, Deserialize)]
pub struct DenialQuery {
    /// Only denials after this `seq`.
    #[serde(default)]
    after: u64,
    /// At most this many (1 to 1000, default 100).
    limit: Option<usize>,
}

/// Connections the sandbox's egress proxy refused, oldest first, with the rule that refused
/// each (the newest 1000 are kept).
#[utoipa::path(get, path = "/v1/sandboxes/{id}/network/denials", tag = "network",
    params(("after" = Option<u64>, Query, description = "only denials after this seq"),
           ("limit" = Option<usize>, Query, description = "1 to 1000, default 100")),
    responses((status = 200, body = DenialList), (status = 404, body = ErrorBody)))]
pub async fn denials(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(query): Query<DenialQuery>,
) -> Result<Json<DenialList>, ApiError> {
    let limit = query.limit.unwrap_or(100);
    if limit == 0 || limit > airlock_runtime::MAX_DENIALS_PER_PAGE {
        return Err(ApiError::invalid("limit", "must be 1 to 1000"));
    }
    let (denials, total) = state.runtime.network_denials(caller.owner(), &id, query.after, limit)?;
    Ok(Json(DenialList { denials: denials.into_iter().map(Into::into).collect(), total }))
}

/// Headers of the caller's request that stay on this side: its credentials for this server.
const PRIVATE_HEADERS: [&str; 5] =
    ["authorization", "x-api-key", "open-sandbox-api-key", "x-execd-access-token", "cookie"];

/// Pass an HTTP request (WebSocket upgrades included) to the server listening on `port` on
/// the sandbox's loopback, and its answer back. The path after `/ports/{port}` is the path
/// the sandbox's server sees; the caller's API key is not passed on.
#[utoipa::path(get, path = "/v1/sandboxes/{id}/ports/{port}/{path}", tag = "network",
    params(("id" = String, Path), ("port" = u16, Path), ("path" = String, Path, description = "any path")),
    responses((status = 200, description = "whatever the sandbox's server answers"),
              (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn ingress(
    State(state): State<AppState>,
    caller: Caller,
    Path(params): Path<Vec<(String, String)>>,
    request: Request,
) -> Result<Response, ApiError> {
    let param = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let id = param("id").unwrap_or_default();
    let port: u16 = param("port")
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| ApiError::invalid("port", "must be a port number, 1 to 65535"))?;
    let path = param("path").unwrap_or_default();
    let prefix = format!("/v1/sandboxes/{id}/ports/{port}");
    relay_to_port(&state, caller.owner(), &id, port, &path, &prefix, request).await
}

/// Pass `request` to `port` of sandbox `id` as a request for `/path`, and its answer back.
/// `prefix` is where the sandbox's server is mounted on this one (`X-Forwarded-Prefix`).
pub(crate) async fn relay_to_port(
    state: &AppState,
    owner: Option<&str>,
    id: &str,
    port: u16,
    path: &str,
    prefix: &str,
    mut request: Request,
) -> Result<Response, ApiError> {
    let stream = state.runtime.connect_port(owner, id, port).await?;
    let target = match request.uri().query() {
        Some(query) => format!("/{path}?{query}"),
        None => format!("/{path}"),
    };
    *request.uri_mut() =
        target.parse().map_err(|_| ApiError::invalid("path", "is not a valid request path"))?;
    let headers = request.headers_mut();
    relay::strip_hop_by_hop(headers);
    for name in PRIVATE_HEADERS {
        headers.remove(name);
    }
    if let Ok(host) = HeaderValue::from_str(&format!("localhost:{port}")) {
        headers.insert(axum::http::header::HOST, host);
    }
    if let Ok(prefix) = HeaderValue::from_str(prefix) {
        headers.insert("x-forwarded-prefix", prefix);
    }
    match relay::send(stream, request).await {
        Ok(response) => Ok(response.map(Body::new)),
        Err(message) => Ok((StatusCode::BAD_GATEWAY, format!("{message}\n")).into_response()),
    }
}
