//! The shapes of the files API under `/v1/sandboxes/{id}/files`: query strings and JSON bodies
//! (strict: unknown fields are refused) and the answers. Paths are absolute inside the sandbox
//! or relative to `/workspace`; the sandbox's agent resolves them, inside the sandbox.

use airlock_runtime::{FileInfo, FileKind};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::api::rfc3339;
use crate::error::ApiError;

fn workspace() -> String {
    "/workspace".to_owned()
}

fn one() -> u32 {
    1
}

/// `?path=`: one path.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PathQuery {
    /// Absolute inside the sandbox, or relative to `/workspace`.
    pub path: String,
}

/// `PUT .../files/content?path=&mode=`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ContentQuery {
    /// The file to write: absolute inside the sandbox, or relative to `/workspace`.
    pub path: String,
    /// Permission bits of a file this creates, in octal (`0644` by default, less the umask); an
    /// existing file keeps its mode.
    pub mode: Option<String>,
}

/// `POST .../files/upload?dir=&mode=`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UploadQuery {
    /// The directory the files go to (created if missing); `/workspace` by default.
    #[serde(default = "workspace")]
    pub dir: String,
    /// Permission bits of the files this creates, in octal (`0644` by default).
    pub mode: Option<String>,
}

/// `GET .../files?path=&depth=`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// The directory; `/workspace` by default.
    #[serde(default = "workspace")]
    pub path: String,
    /// Levels to descend, 1 to 20: 1 lists the directory's own entries.
    #[serde(default = "one")]
    pub depth: u32,
}

/// `DELETE .../files?path=&recursive=`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RemoveQuery {
    /// The file, symlink (never what it points to) or directory.
    pub path: String,
    /// Remove a directory with everything in it; without it only an empty one.
    #[serde(default)]
    pub recursive: bool,
}

/// `POST .../files/mkdir`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MakeDir {
    /// The directory to create.
    pub path: String,
    /// Create missing parents too, and accept a directory that already exists.
    #[serde(default)]
    pub parents: bool,
    /// Permission bits in octal (`0755` by default, less the umask).
    pub mode: Option<String>,
}

/// `POST .../files/move`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MoveFile {
    /// What to move.
    pub from: String,
    /// Its new path, on the same filesystem (`/workspace` and `/tmp` are two).
    pub to: String,
    /// Replace what is at `to`; without it an existing `to` is `409 FILE_EXISTS`.
    #[serde(default)]
    pub overwrite: bool,
}

/// `PUT .../files/text`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WriteText {
    /// The file; missing parent directories are created.
    pub path: String,
    /// Its whole new content (the file is truncated first).
    pub content: String,
    /// Permission bits of a file this creates, in octal (`0644` by default).
    pub mode: Option<String>,
}

/// A file read as text.
#[derive(Debug, Serialize, ToSchema)]
pub struct TextFile {
    /// The path as asked.
    pub path: String,
    /// The content, which must be UTF-8.
    pub content: String,
    /// Its size in bytes.
    pub size: u64,
}

/// The form of a multipart upload, for the OpenAPI document only (the handler streams the
/// parts): each part is one file, written to `dir` under its `filename`.
#[derive(Debug, ToSchema)]
pub struct UploadForm {
    /// Any number of file parts, whatever their field names.
    #[schema(content_media_type = "application/octet-stream")]
    pub file: Vec<u8>,
}

/// A file, directory, symlink or other entry.
#[derive(Debug, Serialize, ToSchema)]
pub struct FileView {
    /// Absolute path inside the sandbox, with `.` and `..` removed lexically.
    pub path: String,
    /// Last path component.
    pub name: String,
    /// `file`, `directory`, `symlink` or `other` (a FIFO, socket or device).
    #[serde(rename = "type")]
    pub kind: String,
    /// Size in bytes.
    pub size: u64,
    /// Permission bits in octal, e.g. `0644`.
    pub mode: String,
    /// Last modification (RFC 3339).
    pub modified_at: String,
    /// Where a symlink points, as written in it; null for anything else.
    pub symlink_target: Option<String>,
}

impl From<FileInfo> for FileView {
    fn from(info: FileInfo) -> FileView {
        let kind = match info.kind {
            FileKind::File => "file",
            FileKind::Directory => "directory",
            FileKind::Symlink => "symlink",
            FileKind::Other => "other",
        };
        FileView {
            path: info.path,
            name: info.name,
            kind: kind.to_owned(),
            size: info.size,
            mode: format!("{:04o}", info.mode),
            modified_at: rfc3339(info.modified_ms),
            symlink_target: info.symlink_target,
        }
    }
}

/// A directory's contents.
#[derive(Debug, Serialize, ToSchema)]
pub struct FileListing {
    /// The directory as asked.
    pub path: String,
    /// Everything found, sorted by path component by component (a directory comes right before
    /// its contents); symlinks are listed, never entered.
    pub entries: Vec<FileView>,
    /// Whether entries were left out beyond 10 000.
    pub truncated: bool,
}

/// What a multipart upload wrote.
#[derive(Debug, Serialize, ToSchema)]
pub struct UploadedFiles {
    /// One entry per file part, in the order of the parts.
    pub files: Vec<FileView>,
}

/// Permission bits given in octal (`644`, `0644` or `0o644`); `field` names them in errors.
/// Only the permission bits: set-user-ID, set-group-ID and sticky are not for the API to set.
pub fn parse_mode(field: &str, mode: Option<&str>) -> Result<Option<u32>, ApiError> {
    let Some(text) = mode else { return Ok(None) };
    let digits = text.strip_prefix("0o").unwrap_or(text);
    match u32::from_str_radix(digits, 8) {
        // `from_str_radix` would also take a sign.
        Ok(bits) if digits.bytes().all(|b| b.is_ascii_digit()) && bits <= 0o777 => Ok(Some(bits)),
        _ => Err(ApiError::invalid(field, format!("{text:?} is not octal permission bits (0 to 0777)"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_are_octal_permission_bits() {
        assert_eq!(parse_mode("mode", Some("0644")).unwrap(), Some(0o644));
        assert_eq!(parse_mode("mode", Some("755")).unwrap(), Some(0o755));
        assert_eq!(parse_mode("mode", Some("0o600")).unwrap(), Some(0o600));
        assert_eq!(parse_mode("mode", None).unwrap(), None);
        for bad in ["", "0o", "888", "4755", "rw-r--r--", "+644", "-1"] {
            let e = parse_mode("mode", Some(bad)).unwrap_err();
            assert_eq!(e.code, "INVALID_ARGUMENT", "{bad}");
            assert!(e.message.contains("mode"), "{}", e.message);
        }
    }

    #[test]
    fn a_file_view_shows_its_mode_in_octal_and_its_kind_as_type() {
        let info = FileInfo {
            path: "/workspace/a".into(),
            name: "a".into(),
            kind: FileKind::File,
            size: 3,
            mode: 0o640,
            modified_ms: 0,
            symlink_target: None,
        };
        let view = serde_json::to_value(FileView::from(info)).unwrap();
        assert_eq!((&view["mode"], &view["type"]), (&serde_json::json!("0640"), &serde_json::json!("file")));
        assert_eq!(view["modified_at"], "1970-01-01T00:00:00.000Z");
    }
}
