//! File bodies: `/files/download` (whole, a byte range with `Range`, or lines with
//! `offset`/`limit`) and `/files/upload` (multipart: a `metadata` part with the path, then the
//! file's part), streamed to and from the sandbox's agent in pieces.

use std::fmt::Display;

use axum::body::Bytes;
use axum::extract::multipart::{Field, MultipartRejection};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::{Stream, StreamExt};
use serde::Deserialize;

use super::files::{check_owner, octal_mode, set_mode};
use super::query;
use crate::api_files::PathQuery;
use crate::auth::Caller;
use crate::compat::opensandbox::access::SandboxAccess;
use crate::compat::opensandbox::error::OsError;
use crate::error::ApiError;
use crate::state::AppState;

/// Largest file read whole: for lines and for replacing text.
pub(super) const MAX_WHOLE_BYTES: u64 = crate::MAX_BODY_BYTES as u64;

/// Largest `metadata` part of an upload.
const MAX_METADATA_BYTES: usize = 64 << 10;

/// `GET /files/download?path=&offset=&limit=`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DownloadQuery {
    path: String,
    /// First line to answer with, from 1.
    offset: Option<u64>,
    /// Lines to answer with.
    limit: Option<u64>,
}

/// Download a file: as `GET /v1/sandboxes/{id}/files/content` answers (with `Range`), or, with
/// `offset` or `limit`, those lines as text.
pub(super) async fn download(
    State(state): State<AppState>,
    access: SandboxAccess,
    q: Result<Query<DownloadQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, OsError> {
    let q = query(q)?;
    if q.offset.is_none() && q.limit.is_none() {
        let caller = Caller { owner: access.owner.clone() };
        let path = Query(PathQuery { path: q.path.clone() });
        let answer = crate::routes::files::download(State(state), caller, Path(access.id), Ok(path), headers);
        let answer = answer.await.map_err(OsError)?;
        if answer.status() != StatusCode::RANGE_NOT_SATISFIABLE {
            return Ok(answer);
        }
        // The native answer's body is in the native shape; this one is OpenSandbox's.
        let mut refused = OsError(ApiError::new(
            "RANGE_NOT_SATISFIABLE",
            format!("the range is beyond the end of {}", q.path),
            "ask for a range within the file, or for the whole file without `Range`",
        ))
        .into_response();
        if let Some(range) = answer.headers().get(header::CONTENT_RANGE) {
            refused.headers_mut().insert(header::CONTENT_RANGE, range.clone());
        }
        return Ok(refused);
    }
    if headers.contains_key(header::RANGE) {
        return Err(OsError::invalid("offset", "lines (`offset`, `limit`) and `Range` do not go together"));
    }
    if q.offset == Some(0) {
        return Err(OsError::invalid("offset", "lines are numbered from 1"));
    }
    let bytes = read_whole(&state, &access, &q.path).await?;
    let text = String::from_utf8_lossy(&bytes);
    let skip = usize::try_from(q.offset.unwrap_or(1) - 1).unwrap_or(usize::MAX);
    let take = q.limit.map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX));
    let lines: String = text.split_inclusive('\n').skip(skip).take(take).collect();
    let mut response = (StatusCode::OK, lines).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    Ok(response)
}

/// A whole file, up to [`MAX_WHOLE_BYTES`].
pub(super) async fn read_whole(
    state: &AppState,
    access: &SandboxAccess,
    path: &str,
) -> Result<Vec<u8>, OsError> {
    let too_large = || {
        OsError(ApiError::new(
            "FILE_TOO_LARGE",
            format!("{path} is larger than the {MAX_WHOLE_BYTES} bytes read whole"),
            "download it as bytes, without `offset` and `limit`",
        ))
    };
    let mut reader = state.runtime.open_file(access.owner(), &access.id, path).await?;
    if reader.size().is_some_and(|size| size > MAX_WHOLE_BYTES) {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    while let Some(piece) = reader.next_chunk().await? {
        bytes.extend_from_slice(&piece);
        if bytes.len() as u64 > MAX_WHOLE_BYTES {
            return Err(too_large());
        }
    }
    Ok(bytes)
}

/// Write a streamed body to `path` in pieces, as the native upload does.
pub(super) async fn write_pieces<E: Display>(
    state: &AppState,
    access: &SandboxAccess,
    path: &str,
    mode: Option<u32>,
    body: impl Stream<Item = Result<Bytes, E>>,
) -> Result<(), OsError> {
    Ok(crate::routes::files::write_pieces(state, access.owner(), &access.id, path, mode, body).await?)
}

/// The `metadata` part of an upload.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Metadata {
    path: String,
    owner: Option<String>,
    group: Option<String>,
    /// Octal digits written as a decimal number: `644` is `0o644`.
    mode: Option<u32>,
}

/// Upload files: each file part is written to the path of the `metadata` part before it
/// (missing parent directories are created), with the metadata's `mode`.
pub(super) async fn upload(
    State(state): State<AppState>,
    access: SandboxAccess,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<StatusCode, OsError> {
    let mut multipart = multipart.map_err(|e| {
        OsError(ApiError::new(
            "UNSUPPORTED_MEDIA_TYPE",
            format!("the body must be multipart/form-data: {}", e.body_text()),
            "send a `metadata` part with the path, then the file's part",
        ))
    })?;
    let bad_part = |e: axum::extract::multipart::MultipartError| {
        OsError::invalid("body", format!("cannot read the multipart body: {}", e.body_text()))
    };
    let mut metadata: Option<Metadata> = None;
    while let Some(field) = multipart.next_field().await.map_err(bad_part)? {
        if field.name() == Some("metadata") {
            metadata = Some(read_metadata(field).await?);
            continue;
        }
        let Some(meta) = metadata.take() else {
            return Err(OsError::invalid(
                "metadata",
                "each file part must follow a `metadata` part with its path",
            ));
        };
        check_owner(&meta.path, meta.owner.as_deref(), meta.group.as_deref())?;
        let mode = meta.mode.map(|m| octal_mode(&meta.path, m)).transpose()?;
        write_pieces(&state, &access, &meta.path, mode, field.map(|c| c.map_err(|e| e.body_text()))).await?;
        if let Some(mode) = mode {
            // The write sets the mode of a file it creates, less the umask; an existing file,
            // or bits the umask took, get it here.
            let info = state.runtime.stat(access.owner(), &access.id, &meta.path).await?;
            if info.mode != mode {
                set_mode(&state, &access, &meta.path, mode).await?;
            }
        }
    }
    if metadata.is_some() {
        return Err(OsError::invalid("metadata", "the last `metadata` part has no file part after it"));
    }
    Ok(StatusCode::OK)
}

async fn read_metadata(mut field: Field<'_>) -> Result<Metadata, OsError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(|e| OsError::invalid("metadata", e.body_text()))? {
        bytes.extend_from_slice(&chunk);
        if bytes.len() > MAX_METADATA_BYTES {
            return Err(OsError::invalid("metadata", format!("is larger than {MAX_METADATA_BYTES} bytes")));
        }
    }
    crate::extract::parse(&bytes).map_err(OsError)
}
