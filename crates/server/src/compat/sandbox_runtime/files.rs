//! Files of a session: upload (multipart, or JSON with UTF-8 or base64 content), create (the
//! Sandbox Runtime's JSON route), download and list. Paths are inside the sandbox; relative ones
//! start at `/workspace`, the session's directory. The agent resolves every path inside the
//! sandbox, so nothing here looks into one.
//!
//! A multipart upload is read whole before it is written, because its `path` field may follow
//! the file; the server's body limit (16 MiB) bounds it. Larger files go through the native
//! `PUT /v1/sandboxes/{id}/files/content`, which streams.

use airlock_runtime::{FileKind, SandboxRecord, WriteOptions, MAX_LIST_DEPTH};
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequest, Multipart, Query, Request, State};
use axum::http::header;
use axum::response::Response;
use base64::Engine;
use serde::{Deserialize, Serialize};

use super::envelope::{ok, Body, SeError, Session};
use super::sessions::open;
use crate::api::rfc3339;
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::state::AppState;

/// Bytes sent to the agent in one write (as the native files API sends them).
const PIECE_BYTES: usize = 2 << 20;

/// Where the session's files are.
const WORKSPACE: &str = "/workspace";

fn query<T>(query: Result<Query<T>, QueryRejection>) -> Result<T, SeError> {
    query.map(|Query(q)| q).map_err(|e| ApiError::invalid("query", e.body_text()).into())
}

/// A file to write, as JSON.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileBody {
    /// Where: a path in the session (relative to `/workspace`, or absolute).
    #[serde(alias = "path")]
    filename: String,
    /// The content.
    content: String,
    /// `utf8` (default) or `base64`.
    #[serde(default)]
    encoding: Encoding,
    /// Permission bits of a new file (`0o644`, 420, when left out).
    mode: Option<u32>,
}

/// How the content of a [`FileBody`] is written.
#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Encoding {
    /// The text as it is.
    #[default]
    Utf8,
    /// Bytes in standard base64.
    Base64,
}

/// Where uploaded files go: `filename` is the whole path of one file, `path` a directory that
/// receives the files under their own names.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UploadTarget {
    filename: Option<String>,
    path: Option<String>,
}

/// A file as the upload and create routes describe it.
#[derive(Debug, Serialize)]
struct Written {
    /// As the request named it.
    filename: String,
    /// Absolute inside the sandbox.
    path: String,
    size: u64,
}

/// `POST /workspace/se/upload/{session_id}`: multipart (`file` parts, `path` and `filename`
/// fields or query parameters), or a JSON [`FileBody`]. The session is created on first use.
pub(super) async fn upload(
    State(state): State<AppState>,
    session: Session,
    target: Result<Query<UploadTarget>, QueryRejection>,
    request: Request,
) -> Result<Response, SeError> {
    let mut target = query(target)?;
    let multipart = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("multipart/form-data"));
    if !multipart {
        let ApiJson(body) = ApiJson::<FileBody>::from_request(request, &state).await?;
        return create_file(&state, &session, body).await;
    }
    let mut form = Multipart::from_request(request, &state)
        .await
        .map_err(|e| ApiError::invalid("body", e.body_text()))?;
    let mut files: Vec<(String, Bytes)> = Vec::new();
    while let Some(field) = form.next_field().await.map_err(|e| ApiError::invalid("body", e.body_text()))? {
        let name = field.name().unwrap_or_default().to_owned();
        if let Some(file_name) = field.file_name().map(str::to_owned) {
            let bytes = field.bytes().await.map_err(|e| ApiError::invalid(&name, e.body_text()))?;
            files.push((file_name, bytes));
            continue;
        }
        let text = field.text().await.map_err(|e| ApiError::invalid(&name, e.body_text()))?;
        match name.as_str() {
            "filename" => target.filename = Some(text),
            "path" => target.path = Some(text),
            _ => {
                return Err(
                    ApiError::invalid(&name, "is not a field of an upload (file, path, filename)").into()
                )
            }
        }
    }
    if files.is_empty() {
        return Err(ApiError::invalid("file", "the form has no file part").into());
    }
    if target.filename.is_some() && files.len() > 1 {
        return Err(ApiError::invalid("filename", "names one file; the form has several").into());
    }
    let record = open(&state, &session, true).await?;
    let mut written = Vec::with_capacity(files.len());
    for (file_name, bytes) in files {
        let destination = match (&target.filename, &target.path) {
            (Some(whole), _) => whole.clone(),
            (None, Some(dir)) => format!("{}/{}", dir.trim_end_matches('/'), base_name(&file_name)?),
            (None, None) => base_name(&file_name)?.to_owned(),
        };
        written.push(write(&state, &session, &record, destination, &bytes, None).await?);
    }
    Ok(answer_written(written))
}

/// The one file's description, as the Sandbox Runtime answered; several in `files`.
fn answer_written(mut written: Vec<Written>) -> Response {
    if written.len() == 1 {
        return ok(written.remove(0));
    }
    ok(serde_json::json!({ "files": written }))
}

/// The last component of a client's file name (browsers may send a whole path).
fn base_name(file_name: &str) -> Result<&str, SeError> {
    match file_name.rsplit(['/', '\\']).next() {
        Some(name) if !name.is_empty() && name != "." && name != ".." => Ok(name),
        _ => Err(ApiError::invalid("file", format!("{file_name:?} is not a file name")).into()),
    }
}

/// `POST /workspace/se/create/{session_id}`: a file from JSON `{"filename", "content", "mode"}`.
/// The session is created on first use.
pub(super) async fn create(
    State(state): State<AppState>,
    session: Session,
    Body(body): Body<FileBody>,
) -> Result<Response, SeError> {
    create_file(&state, &session, body).await
}

async fn create_file(state: &AppState, session: &Session, body: FileBody) -> Result<Response, SeError> {
    let bytes = match body.encoding {
        Encoding::Utf8 => body.content.into_bytes(),
        Encoding::Base64 => base64::engine::general_purpose::STANDARD
            .decode(body.content.as_bytes())
            .map_err(|e| ApiError::invalid("content", format!("bad base64: {e}")))?,
    };
    if body.mode.is_some_and(|m| m > 0o777) {
        return Err(ApiError::invalid("mode", "must be permission bits, 0 to 0o777 (511)").into());
    }
    let record = open(state, session, true).await?;
    Ok(answer_written(vec![write(state, session, &record, body.filename, &bytes, body.mode).await?]))
}

/// Write `bytes` to `filename` in pieces, creating parent directories, and describe the file.
async fn write(
    state: &AppState,
    session: &Session,
    record: &SandboxRecord,
    filename: String,
    bytes: &[u8],
    mode: Option<u32>,
) -> Result<Written, SeError> {
    let (owner, id) = (session.owner(), record.id.as_str());
    let mut offset = None;
    // An empty file is still written once, to create it.
    for piece in bytes.chunks(PIECE_BYTES).chain(bytes.is_empty().then_some(&[][..])) {
        let how = WriteOptions { offset, create_parents: offset.is_none(), mode };
        state.runtime.write_file(owner, id, &filename, piece, how).await?;
        offset = Some(offset.unwrap_or(0) + piece.len() as u64);
    }
    let info = state.runtime.stat(owner, id, &filename).await?;
    Ok(Written { filename, path: info.path, size: info.size })
}

/// The path of a download or listing: the route's `{*path}`, or `?path=`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PathQuery {
    path: Option<String>,
    /// Listings: descend into directories.
    #[serde(default)]
    recursive: bool,
}

fn path_of(session: &Session, q: &PathQuery) -> Option<String> {
    session.path.clone().or_else(|| q.path.clone()).filter(|p| !p.is_empty())
}

/// `GET /workspace/se/download/{session_id}/{path}` (or `?path=`): the file's bytes.
pub(super) async fn download(
    State(state): State<AppState>,
    session: Session,
    q: Result<Query<PathQuery>, QueryRejection>,
) -> Result<Response, SeError> {
    let q = query(q)?;
    let path = path_of(&session, &q).ok_or_else(|| ApiError::invalid("path", "name the file to download"))?;
    let record = open(&state, &session, false).await?;
    let reader = state.runtime.open_file(session.owner(), &record.id, &path).await?;
    let mut response = Response::builder().header(header::CONTENT_TYPE, "application/octet-stream");
    if let Some(size) = reader.size() {
        response = response.header(header::CONTENT_LENGTH, size);
    }
    let name = base_name(&path).unwrap_or("download");
    if name.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\') {
        response = response.header(header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\""));
    }
    Ok(response.body(crate::routes::files::body_of(reader, path)).unwrap_or_default())
}

/// A file of a listing.
#[derive(Debug, Serialize)]
struct Listed {
    /// Its last component.
    name: String,
    /// Relative to `/workspace` when inside it, else absolute.
    filename: String,
    /// Absolute inside the sandbox.
    path: String,
    size: u64,
    /// Its extension, or `unknown`, as the Sandbox Runtime named it.
    #[serde(rename = "type")]
    kind: String,
    /// RFC 3339.
    modified: String,
}

/// `GET /workspace/se/files/{session_id}[/{path}]` (or `?path=`, `?recursive=true`): the
/// files of a directory, `/workspace` by default, and its subdirectories in `directories`.
pub(super) async fn list(
    State(state): State<AppState>,
    session: Session,
    q: Result<Query<PathQuery>, QueryRejection>,
) -> Result<Response, SeError> {
    let q = query(q)?;
    let path = path_of(&session, &q).unwrap_or_else(|| WORKSPACE.to_owned());
    let record = open(&state, &session, false).await?;
    let depth = if q.recursive { MAX_LIST_DEPTH } else { 1 };
    let listing = state.runtime.list_dir(session.owner(), &record.id, &path, depth).await?;
    let relative = |p: &str| match p.strip_prefix(WORKSPACE).and_then(|rest| rest.strip_prefix('/')) {
        Some(rest) => rest.to_owned(),
        None => p.to_owned(),
    };
    let mut files = Vec::new();
    let mut directories = Vec::new();
    for entry in listing.entries {
        match entry.kind {
            FileKind::File => files.push(Listed {
                kind: entry.name.rsplit_once('.').map_or("unknown", |(_, ext)| ext).to_owned(),
                filename: relative(&entry.path),
                name: entry.name,
                size: entry.size,
                modified: rfc3339(entry.modified_ms),
                path: entry.path,
            }),
            FileKind::Directory => directories.push(relative(&entry.path)),
            FileKind::Symlink | FileKind::Other => {}
        }
    }
    Ok(ok(serde_json::json!({ "files": files, "directories": directories, "truncated": listing.truncated })))
}
