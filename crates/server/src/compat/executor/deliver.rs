//! Calls to the control plane, at the Sandbox Executor's paths: a result goes to
//! `POST {CONTROL_PLANE_URL}/api/v1/internal/executions/{id}/result` with the header
//! `Idempotency-Key: {id}`, heartbeats to `.../{id}/heartbeat`.
//!
//! A result is written to the store's outbox before its first attempt and removed once the
//! control plane answers 2xx, or refuses it for good (a 4xx other than 401, 408 and 429).
//! Anything else (no connection, no answer, 5xx) is retried with a doubling wait, without end;
//! a restart delivers what is left. Heartbeats are not retried: the next one follows soon.

use std::time::{Duration, Instant, SystemTime};

use airlock_runtime::relay;
use airlock_runtime::Runtime;
use axum::body::Body;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, HOST, USER_AGENT};
use axum::http::{Request, StatusCode};
use serde_json::{json, Value};
use tokio::net::TcpStream;

use super::{BearerToken, HttpUrl};
use crate::state::AppState;

/// The outbox topic of executor results.
pub const TOPIC: &str = "executor.result";

/// Wait before the first retry; it doubles up to [`LAST_RETRY_WAIT`].
const FIRST_RETRY_WAIT: Duration = Duration::from_millis(500);

/// Longest wait between two attempts.
const LAST_RETRY_WAIT: Duration = Duration::from_secs(30);

/// How long one delivery attempt may take, connection included.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long one heartbeat may take.
const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(5);

/// Most bytes of an answer kept for the log.
const ANSWER_LOG_BYTES: usize = 4096;

/// Where the result of execution `id` goes.
pub fn result_url(control_plane: &HttpUrl, id: &str) -> HttpUrl {
    control_plane.join(&format!("/api/v1/internal/executions/{id}/result"))
}

/// Where the heartbeats of execution `id` go.
pub fn heartbeat_url(control_plane: &HttpUrl, id: &str) -> HttpUrl {
    control_plane.join(&format!("/api/v1/internal/executions/{id}/heartbeat"))
}

/// Keep the result of execution `id` in the outbox, then deliver it in the background.
pub fn keep_and_deliver(state: &AppState, id: &str, payload: Value) {
    let settings = &state.front_doors.executor;
    let url = settings.control_plane.as_ref().map(|cp| result_url(cp, id));
    let address = url.as_ref().map(ToString::to_string);
    if let Err(e) = state.runtime.with_store(|s| s.outbox_put(TOPIC, id, address.as_deref(), &payload)) {
        tracing::error!(execution_id = id, error = %e,
                        "cannot keep an execution's result in the store; delivering it from memory");
    }
    match url {
        Some(url) => {
            let token = settings.control_plane_token.clone();
            tokio::spawn(deliver(state.runtime.clone(), token, id.to_owned(), url, payload));
        }
        None => tracing::info!(execution_id = id, status = %payload["status"],
                               "no CONTROL_PLANE_URL: the result stays in the store until a start names one"),
    }
}

/// Deliver every result an earlier run of the server left undelivered: to the address it was
/// meant for, or to the control plane named now when it had none.
pub fn redeliver(state: &AppState) {
    let settings = &state.front_doors.executor;
    let pending = match state.runtime.with_store(|s| s.outbox_pending(TOPIC)) {
        Ok(pending) => pending,
        Err(e) => {
            tracing::error!(error = %e, "cannot read undelivered executor results from the store");
            return;
        }
    };
    let (mut started, mut waiting) = (0, 0);
    for item in pending {
        let meant = item.url.as_deref().and_then(|u| HttpUrl::parse(u).ok());
        let Some(url) = meant.or_else(|| settings.control_plane.as_ref().map(|cp| result_url(cp, &item.key)))
        else {
            waiting += 1;
            continue;
        };
        let token = settings.control_plane_token.clone();
        tokio::spawn(deliver(state.runtime.clone(), token, item.key, url, item.payload));
        started += 1;
    }
    if started + waiting > 0 {
        tracing::info!(
            delivering = started,
            without_control_plane = waiting,
            "undelivered executor results from an earlier run"
        );
    }
}

/// Post `payload` until the control plane acknowledges it or refuses it for good.
async fn deliver(runtime: Runtime, token: Option<BearerToken>, id: String, url: HttpUrl, payload: Value) {
    let body = payload.to_string();
    let mut wait = FIRST_RETRY_WAIT;
    for attempt in 1u64.. {
        let error = match post(&url, &body, Some(&id), token.as_ref(), ATTEMPT_TIMEOUT).await {
            Ok((status, _)) if status.is_success() => {
                tracing::info!(execution_id = %id, attempt, "result delivered to the control plane");
                forget(&runtime, &id);
                return;
            }
            Ok((status, answer)) if refused_for_good(status) => {
                tracing::error!(execution_id = %id, status = status.as_u16(), answer, url = %url,
                                "the control plane refused the result; it is not sent again");
                forget(&runtime, &id);
                return;
            }
            Ok((status, _)) => format!("the control plane answered {status}"),
            Err(e) => e,
        };
        if let Err(e) = runtime.with_store(|s| s.outbox_failed(TOPIC, &id, &error)) {
            tracing::warn!(execution_id = %id, error = %e, "cannot note a failed delivery in the store");
        }
        tracing::warn!(execution_id = %id, attempt, error, retry_in_ms = wait.as_millis() as u64,
                       "cannot deliver a result to the control plane; it is kept and retried");
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(LAST_RETRY_WAIT);
    }
}

/// A 4xx that sending again cannot change. 401 can (a token put right at the control plane),
/// 408 and 429 ask for it.
fn refused_for_good(status: StatusCode) -> bool {
    status.is_client_error() && !matches!(status.as_u16(), 401 | 408 | 429)
}

fn forget(runtime: &Runtime, id: &str) {
    if let Err(e) = runtime.with_store(|s| s.outbox_remove(TOPIC, id)) {
        tracing::warn!(execution_id = id, error = %e,
                       "cannot remove a delivered result from the store; a restart sends it again");
    }
}

/// Tell the control plane every `every` that execution `id` still runs, until aborted.
pub async fn heartbeats(
    url: HttpUrl,
    token: Option<BearerToken>,
    id: String,
    started: Instant,
    every: Duration,
) {
    // A zero period would make `interval` panic.
    let mut ticks = tokio::time::interval(every.max(Duration::from_millis(10)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let beat = json!({
            "execution_id": id,
            "status": "running",
            "timestamp": humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            "elapsed_ms": started.elapsed().as_millis() as u64,
            "progress": null,
        });
        match post(&url, &beat.to_string(), None, token.as_ref(), HEARTBEAT_TIMEOUT).await {
            Ok((status, _)) if status.is_success() => {}
            Ok((status, _)) => {
                tracing::debug!(execution_id = %id, status = status.as_u16(), "heartbeat refused")
            }
            Err(error) => tracing::debug!(execution_id = %id, error, "heartbeat not delivered"),
        }
    }
}

/// One JSON POST to `url`: its status and the start of its answer, or why there was none.
async fn post(
    url: &HttpUrl,
    body: &str,
    idempotency_key: Option<&str>,
    token: Option<&BearerToken>,
    limit: Duration,
) -> Result<(StatusCode, String), String> {
    let exchange = async {
        let stream = TcpStream::connect((url.connect_host(), url.port))
            .await
            .map_err(|e| format!("cannot connect to {}: {e}", url.authority()))?;
        let mut request = Request::post(url.request_path())
            .header(HOST, url.authority())
            .header(CONTENT_TYPE, "application/json")
            .header(USER_AGENT, concat!("airlock/", env!("CARGO_PKG_VERSION")));
        if let Some(key) = idempotency_key {
            request = request.header("idempotency-key", key);
        }
        if let Some(token) = token {
            request = request.header(AUTHORIZATION, format!("Bearer {}", token.expose()));
        }
        let request =
            request.body(Body::from(body.to_owned())).map_err(|e| format!("cannot make the request: {e}"))?;
        let response = relay::send(stream, request).await?;
        let status = response.status();
        let answer = axum::body::to_bytes(Body::new(response.into_body()), ANSWER_LOG_BYTES)
            .await
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default();
        Ok((status, answer))
    };
    match tokio::time::timeout(limit, exchange).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer from {} within {}s", url.authority(), limit.as_secs())),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;

    use super::*;

    #[test]
    fn callbacks_go_to_the_sandbox_executors_paths() {
        let cp = HttpUrl::parse("http://cp:8000/base").unwrap();
        assert_eq!(
            result_url(&cp, "exec_1").to_string(),
            "http://cp:8000/base/api/v1/internal/executions/exec_1/result"
        );
        assert_eq!(heartbeat_url(&cp, "e").path, "/base/api/v1/internal/executions/e/heartbeat");
    }

    #[test]
    fn only_a_client_error_that_cannot_change_is_final() {
        for final_status in [400, 404, 409, 422] {
            assert!(refused_for_good(StatusCode::from_u16(final_status).unwrap()), "{final_status}");
        }
        for retried in [401, 408, 429, 500, 502, 503, 301] {
            assert!(!refused_for_good(StatusCode::from_u16(retried).unwrap()), "{retried}");
        }
    }
}
