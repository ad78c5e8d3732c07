//! Signed ingress links: `/v1/sandboxes/{id}/links` makes and revokes them, and
//! `/v1/links/{token}/...` reaches the port a link names without an API key, as
//! `/v1/sandboxes/{id}/ports/{port}/...` does with one.

use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Json;

use super::network::relay_to_port;
use crate::api_network::{LinkRequest, LinkView};
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::extract::ApiJson;
use crate::state::AppState;

/// Make a link to a port of the sandbox that works without an API key until it expires: for a
/// browser, a webhook, or a person without a key. Anyone who has the link can use it.
#[utoipa::path(post, path = "/v1/sandboxes/{id}/links", tag = "network", request_body = LinkRequest,
    responses((status = 201, body = LinkView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<LinkRequest>,
) -> Result<(StatusCode, Json<LinkView>), ApiError> {
    let (token, link) = state.runtime.create_ingress_link(caller.owner(), &id, body.port, body.expires_in)?;
    Ok((StatusCode::CREATED, Json(LinkView::new(&origin(&headers), token, &link))))
}

/// Revoke every link to the sandbox made so far; links made afterwards work.
#[utoipa::path(delete, path = "/v1/sandboxes/{id}/links", tag = "network",
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.runtime.revoke_ingress_links(caller.owner(), &id)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Pass a request (WebSocket upgrades included) to the port a link names; the path after the
/// token is the path the sandbox's server sees. No API key is needed, or passed on.
#[utoipa::path(get, path = "/v1/links/{token}/{path}", tag = "network", security(()),
    params(("token" = String, Path), ("path" = String, Path, description = "any path")),
    responses((status = 200, description = "whatever the sandbox's server answers"),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
pub async fn open(
    State(state): State<AppState>,
    Path(params): Path<Vec<(String, String)>>,
    request: Request,
) -> Result<Response, ApiError> {
    let param = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let token = param("token").unwrap_or_default();
    let path = param("path").unwrap_or_default();
    let (owner, link) = state.runtime.open_ingress_link(&token)?;
    let prefix = format!("/v1/links/{token}");
    relay_to_port(&state, owner.as_deref(), &link.sandbox_id, link.port, &path, &prefix, request).await
}

/// `scheme://host` as the client reached this server.
fn origin(headers: &HeaderMap) -> String {
    let value = |name| headers.get(name).and_then(|v: &axum::http::HeaderValue| v.to_str().ok());
    let scheme = match value("x-forwarded-proto") {
        Some("https") => "https",
        _ => "http",
    };
    format!("{scheme}://{}", value("host").unwrap_or("localhost"))
}
