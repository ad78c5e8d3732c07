//! `/v1/sandboxes/{id}/files`: upload (a raw body or multipart), download (with ranges), list,
//! stat, mkdir, move, delete, and small text files as JSON.
//!
//! Every operation is carried out by the sandbox's agent, inside the sandbox, so paths resolve
//! there and can never reach the host; nothing here looks into a path. Bodies go through in
//! pieces in both directions: an upload of any size holds at most one piece in memory, and a
//! download asks the agent for the next piece only when the client has taken the previous one.

use std::fmt::Display;

use airlock_runtime::{FileReader, WriteOptions};
use axum::body::{Body, Bytes};
use axum::extract::multipart::{MultipartError, MultipartRejection};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::{Stream, StreamExt};

use crate::api_files::{
    parse_mode, ContentQuery, FileListing, FileView, ListQuery, MakeDir, MoveFile, PathQuery, RemoveQuery,
    TextFile, UploadForm, UploadQuery, UploadedFiles, WriteText,
};
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::extract::ApiJson;
use crate::state::AppState;

/// Bytes sent to the agent in one write: large enough that the round trips do not count, small
/// enough that an upload holds little memory on either side (base64 makes it a third more).
const PIECE_BYTES: usize = 2 << 20;

/// Largest file `GET .../files/text` reads; `PUT` is bounded by the JSON body limit, the same.
pub const MAX_TEXT_BYTES: u64 = crate::MAX_BODY_BYTES as u64;

/// The deepest a listing descends (the agent's own maximum).
const MAX_DEPTH: u32 = airlock_runtime::MAX_LIST_DEPTH;

fn query<T>(query: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    query.map(|Query(q)| q).map_err(|e| ApiError::invalid("query", e.body_text()))
}

/// Download a file. `Range: bytes=A-B`, `bytes=A-` and `bytes=-N` answer 206 with that part;
/// a range beyond the end answers 416. Other forms of `Range` (several ranges) get the whole
/// file. FIFOs, devices and directories are refused at once.
#[utoipa::path(get, path = "/v1/sandboxes/{id}/files/content", tag = "files", params(PathQuery),
    responses((status = 200, content_type = "application/octet-stream"),
              (status = 206, content_type = "application/octet-stream"),
              (status = 404, body = ErrorBody), (status = 416, body = ErrorBody)))]
pub async fn download(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    q: Result<Query<PathQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let q = query(q)?;
    let mut reader = state.runtime.open_file(caller.owner(), &id, &q.path).await?;
    let mut response = Response::builder().header(header::CONTENT_TYPE, "application/octet-stream");
    let Some(size) = reader.size() else {
        // A file of /proc reports size 0: it is sent to its end, without length or ranges.
        let response = response.header(header::ACCEPT_RANGES, "none").body(body_of(reader, q.path));
        return Ok(response.unwrap_or_default());
    };
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok()).map(|r| parse_range(r, size));
    let status = match range {
        Some(Range::Unsatisfiable) => {
            let mut refused = ApiError::new(
                "RANGE_NOT_SATISFIABLE",
                format!("the range is beyond the end of {}, which has {size} bytes", q.path),
                "ask for a range within the file, or for the whole file without `Range`",
            )
            .into_response();
            if let Ok(value) = HeaderValue::from_str(&format!("bytes */{size}")) {
                refused.headers_mut().insert(header::CONTENT_RANGE, value);
            }
            return Ok(refused);
        }
        Some(Range::Part { start, end }) => {
            reader.window(start, end - start + 1);
            response = response
                .header(header::CONTENT_RANGE, format!("bytes {start}-{end}/{size}"))
                .header(header::CONTENT_LENGTH, end - start + 1);
            StatusCode::PARTIAL_CONTENT
        }
        Some(Range::Whole) | None => {
            response = response.header(header::CONTENT_LENGTH, size);
            StatusCode::OK
        }
    };
    let response =
        response.status(status).header(header::ACCEPT_RANGES, "bytes").body(body_of(reader, q.path));
    Ok(response.unwrap_or_default())
}

/// The reader's pieces as a response body. A failure midway can only cut the body short, which
/// the client sees against `Content-Length`; the log says why.
pub(crate) fn body_of(reader: FileReader, path: String) -> Body {
    let pieces = futures_util::stream::unfold(Some((reader, path)), |state| async move {
        let (mut reader, path) = state?;
        match reader.next_chunk().await {
            Ok(Some(piece)) => Some((Ok(Bytes::from(piece)), Some((reader, path)))),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(path, error = %e, "download cut short");
                Some((Err(std::io::Error::other(e.to_string())), None))
            }
        }
    });
    Body::from_stream(pieces)
}

/// What a `Range` header asks of a file of a known size.
#[derive(Debug, PartialEq, Eq)]
enum Range {
    /// Bytes `start..=end`, within the file.
    Part { start: u64, end: u64 },
    /// Nothing of the file: answered 416.
    Unsatisfiable,
    /// A form this server does not serve in part (several ranges, another unit, or one it
    /// cannot read): RFC 9110 lets it answer with the whole file.
    Whole,
}

/// Parse one byte range (RFC 9110, section 14.1.2) against a file of `size` bytes.
fn parse_range(header: &str, size: u64) -> Range {
    let Some(spec) = header.trim().strip_prefix("bytes=") else { return Range::Whole };
    if spec.contains(',') {
        return Range::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else { return Range::Whole };
    let number = |text: &str| text.trim().parse::<u64>().ok();
    match (first.trim().is_empty(), number(first), number(last)) {
        // `bytes=-N`: the last N bytes.
        (true, _, Some(0)) => Range::Unsatisfiable,
        (true, _, Some(_)) if size == 0 => Range::Unsatisfiable,
        (true, _, Some(n)) => Range::Part { start: size.saturating_sub(n), end: size - 1 },
        (false, Some(start), _) if start >= size => {
            // Only a well-formed range is unsatisfiable; `bytes=9-3` is ignored instead.
            if last.trim().is_empty() || number(last).is_some_and(|end| end >= start) {
                Range::Unsatisfiable
            } else {
                Range::Whole
            }
        }
        (false, Some(start), None) if last.trim().is_empty() => Range::Part { start, end: size - 1 },
        (false, Some(start), Some(end)) if end >= start => Range::Part { start, end: end.min(size - 1) },
        _ => Range::Whole,
    }
}

/// Write a streamed body to `path` in pieces: the first creates or truncates the file (and its
/// parents), the next ones write at growing offsets. Not atomic: a body that breaks off leaves
/// what was written.
pub(crate) async fn write_pieces<E: Display>(
    state: &AppState,
    owner: Option<&str>,
    id: &str,
    path: &str,
    mode: Option<u32>,
    body: impl Stream<Item = Result<Bytes, E>>,
) -> Result<(), ApiError> {
    let mut body = std::pin::pin!(body);
    let mut piece = Vec::with_capacity(PIECE_BYTES);
    let mut written: Option<u64> = None;
    let flush = |piece: Vec<u8>, written: Option<u64>| {
        let how = WriteOptions { offset: written, create_parents: written.is_none(), mode };
        async move {
            state.runtime.write_file(owner, id, path, &piece, how).await?;
            Ok::<_, ApiError>(written.unwrap_or(0) + piece.len() as u64)
        }
    };
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| ApiError::invalid("body", format!("cannot read it: {e}")))?;
        let mut rest = &chunk[..];
        while !rest.is_empty() {
            let take = (PIECE_BYTES - piece.len()).min(rest.len());
            piece.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if piece.len() == PIECE_BYTES {
                let full = std::mem::replace(&mut piece, Vec::with_capacity(PIECE_BYTES));
                written = Some(flush(full, written).await?);
            }
        }
    }
    // An empty body still creates (or empties) the file.
    if written.is_none() || !piece.is_empty() {
        flush(piece, written).await?;
    }
    Ok(())
}

/// Upload a file as the raw request body, of any size (`Content-Type` is not looked at). The
/// file is created or truncated, and missing parent directories are created. Answers with the
/// file's description.
#[utoipa::path(put, path = "/v1/sandboxes/{id}/files/content", tag = "files", params(ContentQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 200, body = FileView), (status = 403, body = ErrorBody),
              (status = 409, body = ErrorBody)))]
pub async fn upload(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    q: Result<Query<ContentQuery>, QueryRejection>,
    body: Body,
) -> Result<Json<FileView>, ApiError> {
    let q = query(q)?;
    let mode = parse_mode("mode", q.mode.as_deref())?;
    write_pieces(&state, caller.owner(), &id, &q.path, mode, body.into_data_stream()).await?;
    Ok(Json(state.runtime.stat(caller.owner(), &id, &q.path).await?.into()))
}

/// Upload files as `multipart/form-data`: each file part is written to `dir` under its
/// `filename` (a plain name: no `/`, not `.` or `..`). Answers 201 with what was written.
#[utoipa::path(post, path = "/v1/sandboxes/{id}/files/upload", tag = "files", params(UploadQuery),
    request_body(content = inline(UploadForm), content_type = "multipart/form-data"),
    responses((status = 201, body = UploadedFiles), (status = 400, body = ErrorBody),
              (status = 415, body = ErrorBody)))]
pub async fn upload_multipart(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    q: Result<Query<UploadQuery>, QueryRejection>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<(StatusCode, Json<UploadedFiles>), ApiError> {
    let q = query(q)?;
    let mode = parse_mode("mode", q.mode.as_deref())?;
    if q.dir.is_empty() {
        return Err(ApiError::invalid("dir", "must not be empty"));
    }
    let mut multipart = multipart.map_err(|e| {
        ApiError::new(
            "UNSUPPORTED_MEDIA_TYPE",
            format!("the body must be multipart/form-data: {}", e.body_text()),
            "send `Content-Type: multipart/form-data; boundary=...` (as `curl -F file=@PATH` does), or \
             PUT one file as the raw body to .../files/content",
        )
    })?;
    let bad_part = |e: MultipartError| {
        ApiError::invalid("body", format!("cannot read the multipart body: {}", e.body_text()))
    };
    let mut files = Vec::new();
    while let Some(field) = multipart.next_field().await.map_err(bad_part)? {
        let part = field.name().unwrap_or_default().to_owned();
        let Some(name) = field.file_name().map(str::to_owned) else {
            return Err(ApiError::invalid(
                &format!("part {part:?}"),
                "has no filename; only file parts are accepted",
            ));
        };
        if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
            return Err(ApiError::invalid(
                &format!("part {part:?}"),
                format!("filename {name:?} is not a plain file name (no `/`, not `.` or `..`)"),
            ));
        }
        let path = format!("{}/{name}", q.dir.trim_end_matches('/'));
        let field = field.map(|chunk| chunk.map_err(|e| e.body_text()));
        write_pieces(&state, caller.owner(), &id, &path, mode, field).await?;
        files.push(state.runtime.stat(caller.owner(), &id, &path).await?.into());
    }
    Ok((StatusCode::CREATED, Json(UploadedFiles { files })))
}

/// List a directory, `depth` levels down (1 to 20, default 1), never entering a symlink; at
/// most 10 000 entries (`truncated` says whether some were left out).
#[utoipa::path(get, path = "/v1/sandboxes/{id}/files", tag = "files", params(ListQuery),
    responses((status = 200, body = FileListing), (status = 404, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<FileListing>, ApiError> {
    let q = query(q)?;
    if !(1..=MAX_DEPTH).contains(&q.depth) {
        return Err(ApiError::invalid("depth", format!("must be 1 to {MAX_DEPTH}")));
    }
    let listing = state.runtime.list_dir(caller.owner(), &id, &q.path, q.depth).await?;
    Ok(Json(FileListing {
        path: q.path,
        entries: listing.entries.into_iter().map(Into::into).collect(),
        truncated: listing.truncated,
    }))
}

/// Describe one path, without following a final symlink.
#[utoipa::path(get, path = "/v1/sandboxes/{id}/files/stat", tag = "files", params(PathQuery),
    responses((status = 200, body = FileView), (status = 404, body = ErrorBody)))]
pub async fn stat(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    q: Result<Query<PathQuery>, QueryRejection>,
) -> Result<Json<FileView>, ApiError> {
    let q = query(q)?;
    Ok(Json(state.runtime.stat(caller.owner(), &id, &q.path).await?.into()))
}

/// Create a directory; with `parents`, also its missing parents, and an existing directory is
/// no error. Answers 201 with the directory's description.
#[utoipa::path(post, path = "/v1/sandboxes/{id}/files/mkdir", tag = "files", request_body = MakeDir,
    responses((status = 201, body = FileView), (status = 409, body = ErrorBody)))]
pub async fn mkdir(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<MakeDir>,
) -> Result<(StatusCode, Json<FileView>), ApiError> {
    let mode = parse_mode("mode", body.mode.as_deref())?;
    state.runtime.mkdir(caller.owner(), &id, &body.path, body.parents, mode).await?;
    Ok((StatusCode::CREATED, Json(state.runtime.stat(caller.owner(), &id, &body.path).await?.into())))
}

/// Move (rename) a file or directory within one filesystem. Without `overwrite` an existing
/// `to` answers 409 `FILE_EXISTS`, checked in the same step as the rename. Answers with the
/// description of `to`.
#[utoipa::path(post, path = "/v1/sandboxes/{id}/files/move", tag = "files", request_body = MoveFile,
    responses((status = 200, body = FileView), (status = 409, body = ErrorBody)))]
pub async fn move_file(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<MoveFile>,
) -> Result<Json<FileView>, ApiError> {
    state.runtime.rename(caller.owner(), &id, &body.from, &body.to, body.overwrite).await?;
    Ok(Json(state.runtime.stat(caller.owner(), &id, &body.to).await?.into()))
}

/// Delete a file, a symlink (never what it points to) or a directory; one with contents only
/// with `recursive=true` (else 409 `DIRECTORY_NOT_EMPTY`).
#[utoipa::path(delete, path = "/v1/sandboxes/{id}/files", tag = "files", params(RemoveQuery),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    q: Result<Query<RemoveQuery>, QueryRejection>,
) -> Result<StatusCode, ApiError> {
    let q = query(q)?;
    state.runtime.remove_path(caller.owner(), &id, &q.path, q.recursive).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Read a text file (UTF-8, at most 16 MiB) as JSON.
#[utoipa::path(get, path = "/v1/sandboxes/{id}/files/text", tag = "files", params(PathQuery),
    responses((status = 200, body = TextFile), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn read_text(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    q: Result<Query<PathQuery>, QueryRejection>,
) -> Result<Json<TextFile>, ApiError> {
    let q = query(q)?;
    let too_large = || {
        ApiError::new(
            "FILE_TOO_LARGE",
            format!("{} is larger than the {MAX_TEXT_BYTES} bytes read as text", q.path),
            "download it with GET /v1/sandboxes/{id}/files/content",
        )
    };
    let mut reader = state.runtime.open_file(caller.owner(), &id, &q.path).await?;
    if reader.size().is_some_and(|size| size > MAX_TEXT_BYTES) {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    while let Some(piece) = reader.next_chunk().await? {
        bytes.extend_from_slice(&piece);
        // Only a file of unknown size (in /proc) gets here with more.
        if bytes.len() as u64 > MAX_TEXT_BYTES {
            return Err(too_large());
        }
    }
    let content = String::from_utf8(bytes).map_err(|e| {
        ApiError::new(
            "FILE_NOT_UTF8",
            format!("{} is not UTF-8 text: {e}", q.path),
            "download it as bytes with GET /v1/sandboxes/{id}/files/content",
        )
    })?;
    Ok(Json(TextFile { size: content.len() as u64, path: q.path, content }))
}

/// Write a text file from JSON: created or truncated, with missing parent directories.
/// Answers with the file's description.
#[utoipa::path(put, path = "/v1/sandboxes/{id}/files/text", tag = "files", request_body = WriteText,
    responses((status = 200, body = FileView), (status = 403, body = ErrorBody),
              (status = 413, body = ErrorBody)))]
pub async fn write_text(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<WriteText>,
) -> Result<Json<FileView>, ApiError> {
    let mode = parse_mode("mode", body.mode.as_deref())?;
    let content = futures_util::stream::iter([Ok::<_, std::convert::Infallible>(Bytes::from(body.content))]);
    write_pieces(&state, caller.owner(), &id, &body.path, mode, content).await?;
    Ok(Json(state.runtime.stat(caller.owner(), &id, &body.path).await?.into()))
}

#[cfg(test)]
mod tests {
    use super::{parse_range, Range};

    #[test]
    fn ranges_of_one_part() {
        let part = |start, end| Range::Part { start, end };
        assert_eq!(parse_range("bytes=0-99", 1000), part(0, 99));
        assert_eq!(parse_range("bytes=990-", 1000), part(990, 999));
        assert_eq!(parse_range("bytes=-10", 1000), part(990, 999));
        assert_eq!(parse_range("bytes=-5000", 1000), part(0, 999), "a suffix longer than the file");
        assert_eq!(parse_range("bytes=900-5000", 1000), part(900, 999), "an end beyond the file");
        assert_eq!(parse_range(" bytes= 5 - 6 ", 1000), part(5, 6));
    }

    #[test]
    fn ranges_beyond_the_end_are_unsatisfiable() {
        assert_eq!(parse_range("bytes=1000-", 1000), Range::Unsatisfiable);
        assert_eq!(parse_range("bytes=1000-2000", 1000), Range::Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 1000), Range::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-", 0), Range::Unsatisfiable);
        assert_eq!(parse_range("bytes=-3", 0), Range::Unsatisfiable);
    }

    #[test]
    fn other_ranges_get_the_whole_file() {
        for header in
            ["bytes=0-1,5-6", "lines=1-2", "bytes=5-2", "bytes=x-", "bytes=", "bytes=1", "bytes=2000-3"]
        {
            assert_eq!(parse_range(header, 1000), Range::Whole, "{header}");
        }
    }
}
