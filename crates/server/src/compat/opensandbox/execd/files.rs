//! Files and directories by path: `/files/info`, `DELETE /files`, `/files/mv`,
//! `/files/permissions`, `/files/search`, `/files/replace`, and `/directories` (make, remove,
//! list), on the runtime's files API, whose agent resolves every path inside the sandbox.
//! Two things the runtime has no operation for go through the sandbox itself: permissions
//! are set by running `chmod` there, and a search is a listing filtered by name here.

use std::collections::BTreeMap;

use airlock_runtime::{FileInfo, FileKind, MAX_LIST_DEPTH};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::command::run_to_end;
use super::transfer::{read_whole, write_pieces};
use super::{glob, query, repeated, OsJson};
use crate::api::rfc3339;
use crate::api_files::parse_mode;
use crate::compat::opensandbox::access::SandboxAccess;
use crate::compat::opensandbox::error::OsError;
use crate::error::ApiError;
use crate::state::AppState;

/// A file as execd describes it. The runtime knows neither owners nor creation times, so
/// `owner` and `group` are empty and `created_at` is the modification time.
#[derive(Debug, Serialize)]
pub(super) struct OsFileInfo {
    path: String,
    size: u64,
    modified_at: String,
    created_at: String,
    owner: String,
    group: String,
    /// Octal digits written as a decimal number: `0o644` is `644`.
    mode: u32,
    #[serde(rename = "type")]
    kind: &'static str,
}

impl From<FileInfo> for OsFileInfo {
    fn from(info: FileInfo) -> OsFileInfo {
        let kind = match info.kind {
            FileKind::File => "file",
            FileKind::Directory => "directory",
            FileKind::Symlink => "symlink",
            FileKind::Other => "other",
        };
        let modified = rfc3339(info.modified_ms);
        OsFileInfo {
            path: info.path,
            size: info.size,
            created_at: modified.clone(),
            modified_at: modified,
            owner: String::new(),
            group: String::new(),
            mode: format!("{:o}", info.mode & 0o7777).parse().unwrap_or_default(),
            kind,
        }
    }
}

/// `mode` as OpenSandbox writes it (`755`), as permission bits.
pub(super) fn octal_mode(path: &str, mode: u32) -> Result<u32, OsError> {
    let bits = parse_mode("mode", Some(&mode.to_string())).map_err(OsError)?;
    bits.ok_or_else(|| OsError::invalid(&format!("mode of {path}"), "is missing"))
}

/// Refuse a change of owner: a sandbox's files all belong to its one user, who may not give
/// them away.
pub(super) fn check_owner(path: &str, owner: Option<&str>, group: Option<&str>) -> Result<(), OsError> {
    if owner.is_some_and(|o| !o.is_empty()) || group.is_some_and(|g| !g.is_empty()) {
        return Err(OsError::invalid(
            &format!("owner of {path}"),
            "files belong to the sandbox's user; setting an owner or group is not supported",
        ));
    }
    Ok(())
}

/// Set permission bits by running `chmod` in the sandbox, as its user.
pub(super) async fn set_mode(
    state: &AppState,
    access: &SandboxAccess,
    path: &str,
    mode: u32,
) -> Result<(), OsError> {
    let argv = ["/bin/chmod", &format!("{mode:o}"), "--", path].map(str::to_owned).to_vec();
    let (record, logs) = run_to_end(state, access, argv).await?;
    if record.exit_code == Some(0) {
        return Ok(());
    }
    Err(OsError(ApiError::new(
        "FILE_OPERATION_FAILED",
        format!("cannot change the mode of {path}: {}", logs.stderr.trim()),
        "check that the path exists and belongs to the sandbox's user",
    )))
}

/// `?path=` given once or more.
type Paths = Result<Query<Vec<(String, String)>>, QueryRejection>;

/// `GET /files/info?path=...`: each path's description, by path.
pub(super) async fn info(
    State(state): State<AppState>,
    access: SandboxAccess,
    q: Paths,
) -> Result<Json<BTreeMap<String, OsFileInfo>>, OsError> {
    let mut infos = BTreeMap::new();
    for path in repeated(query(q)?, "path")? {
        let info = state.runtime.stat(access.owner(), &access.id, &path).await?;
        infos.insert(path, info.into());
    }
    Ok(Json(infos))
}

/// `DELETE /files?path=...`: remove files (an empty directory too; use `/directories` for
/// one with contents).
pub(super) async fn remove_files(
    State(state): State<AppState>,
    access: SandboxAccess,
    q: Paths,
) -> Result<StatusCode, OsError> {
    for path in repeated(query(q)?, "path")? {
        state.runtime.remove_path(access.owner(), &access.id, &path, false).await?;
    }
    Ok(StatusCode::OK)
}

/// One move of `/files/mv`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Move {
    src: String,
    dest: String,
}

/// `POST /files/mv`: move each `src` to `dest`, replacing what is there (as `rename(2)`).
pub(super) async fn move_files(
    State(state): State<AppState>,
    access: SandboxAccess,
    OsJson(moves): OsJson<Vec<Move>>,
) -> Result<StatusCode, OsError> {
    for m in moves {
        state.runtime.rename(access.owner(), &access.id, &m.src, &m.dest, true).await?;
    }
    Ok(StatusCode::OK)
}

/// Permissions of one path in `/directories` and `/files/permissions`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Permission {
    #[serde(default = "default_mode")]
    mode: u32,
    owner: Option<String>,
    group: Option<String>,
}

fn default_mode() -> u32 {
    755
}

/// `POST /directories`: create each directory with its parents (an existing one is no error).
pub(super) async fn make_dirs(
    State(state): State<AppState>,
    access: SandboxAccess,
    OsJson(dirs): OsJson<BTreeMap<String, Permission>>,
) -> Result<StatusCode, OsError> {
    for (path, p) in dirs {
        check_owner(&path, p.owner.as_deref(), p.group.as_deref())?;
        let mode = octal_mode(&path, p.mode)?;
        state.runtime.mkdir(access.owner(), &access.id, &path, true, Some(mode)).await?;
    }
    Ok(StatusCode::OK)
}

/// `DELETE /directories?path=...`: remove each directory with everything in it.
pub(super) async fn remove_dirs(
    State(state): State<AppState>,
    access: SandboxAccess,
    q: Paths,
) -> Result<StatusCode, OsError> {
    for path in repeated(query(q)?, "path")? {
        state.runtime.remove_path(access.owner(), &access.id, &path, true).await?;
    }
    Ok(StatusCode::OK)
}

/// `GET /directories/list?path=&depth=`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    path: String,
    depth: Option<u32>,
}

/// List a directory `depth` levels down (1 by default), never entering a symlink. A listing
/// cut at the agent's maximum says so in `X-Airlock-Truncated: true`.
pub(super) async fn list_dir(
    State(state): State<AppState>,
    access: SandboxAccess,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, OsError> {
    let q = query(q)?;
    let depth = q.depth.unwrap_or(1);
    if !(1..=MAX_LIST_DEPTH).contains(&depth) {
        return Err(OsError::invalid("depth", format!("must be 1 to {MAX_LIST_DEPTH}")));
    }
    let listing = state.runtime.list_dir(access.owner(), &access.id, &q.path, depth).await?;
    let entries: Vec<OsFileInfo> = listing.entries.into_iter().map(Into::into).collect();
    let mut response = Json(entries).into_response();
    if listing.truncated {
        response.headers_mut().insert("x-airlock-truncated", HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// `POST /files/permissions`: set each path's mode.
pub(super) async fn set_permissions(
    State(state): State<AppState>,
    access: SandboxAccess,
    OsJson(paths): OsJson<BTreeMap<String, Permission>>,
) -> Result<StatusCode, OsError> {
    for (path, p) in paths {
        check_owner(&path, p.owner.as_deref(), p.group.as_deref())?;
        let mode = octal_mode(&path, p.mode)?;
        // A missing path is FILE_NOT_FOUND, as elsewhere, rather than chmod's words.
        state.runtime.stat(access.owner(), &access.id, &path).await?;
        set_mode(&state, &access, &path, mode).await?;
    }
    Ok(StatusCode::OK)
}

/// `GET /files/search?path=&pattern=`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SearchQuery {
    path: String,
    pattern: Option<String>,
}

/// Everything but directories under `path` whose name matches the glob `pattern` (`**`, all,
/// by default), as deep as the runtime lists.
pub(super) async fn search(
    State(state): State<AppState>,
    access: SandboxAccess,
    q: Result<Query<SearchQuery>, QueryRejection>,
) -> Result<Json<Vec<OsFileInfo>>, OsError> {
    let q = query(q)?;
    let pattern = q.pattern.filter(|p| !p.is_empty()).unwrap_or_else(|| "**".to_owned());
    let listing = state.runtime.list_dir(access.owner(), &access.id, &q.path, MAX_LIST_DEPTH).await?;
    if listing.truncated {
        return Err(OsError::invalid(
            "path",
            "holds more entries than a search walks; search a smaller directory",
        ));
    }
    let found = listing
        .entries
        .into_iter()
        .filter(|e| e.kind != FileKind::Directory && glob::matches(&pattern, &e.name))
        .map(Into::into)
        .collect();
    Ok(Json(found))
}

/// One replacement of `/files/replace`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Replace {
    old: String,
    new: String,
}

/// `?verbose=` of `/files/replace` (the counts are always given).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReplaceQuery {
    #[serde(rename = "verbose")]
    _verbose: Option<bool>,
}

/// How many times a file's text was replaced.
#[derive(Debug, Serialize)]
pub(super) struct Replaced {
    #[serde(rename = "replacedCount")]
    replaced_count: usize,
}

/// `POST /files/replace`: in each text file, replace every `old` with `new`; a file where
/// `old` does not occur is left as it is.
pub(super) async fn replace(
    State(state): State<AppState>,
    access: SandboxAccess,
    q: Result<Query<ReplaceQuery>, QueryRejection>,
    OsJson(files): OsJson<BTreeMap<String, Replace>>,
) -> Result<Json<BTreeMap<String, Replaced>>, OsError> {
    query(q)?;
    let mut counts = BTreeMap::new();
    for (path, r) in files {
        if r.old.is_empty() {
            return Err(OsError::invalid(&format!("old of {path}"), "must not be empty"));
        }
        let text = String::from_utf8(read_whole(&state, &access, &path).await?).map_err(|_| {
            OsError(ApiError::new(
                "FILE_NOT_UTF8",
                format!("{path} is not UTF-8 text"),
                "replace text in text files only",
            ))
        })?;
        let replaced_count = text.matches(&r.old).count();
        if replaced_count > 0 {
            let content = Ok::<_, std::convert::Infallible>(text.replace(&r.old, &r.new).into());
            write_pieces(&state, &access, &path, None, futures_util::stream::iter([content])).await?;
        }
        counts.insert(path, Replaced { replaced_count });
    }
    Ok(Json(counts))
}
