//! File operations for the runtime's files API: read, write, stat, list, mkdir, move, remove.
//!
//! The agent's root is the sandbox's root and its identity the sandbox's, so the kernel resolves
//! every path here inside the sandbox, symlinks and `..` included: no path can reach the host,
//! and nothing here re-implements resolution (a second resolver could only disagree with the
//! kernel). Paths are normalised lexically for display alone.
//!
//! Sandbox code may plant anything where the caller expects a file. Reads and writes open with
//! `O_NONBLOCK | O_NOCTTY` and go on only with a regular file, so a FIFO cannot hang the agent,
//! `/dev/zero` cannot flood it and a terminal cannot become its controlling one.
//!
//! Each operation runs on a thread of its own and answers with its request's id, so a slow disk
//! never holds up the request loop. The release build aborts on panic, so nothing here may panic:
//! a panic would end the agent and the sandbox with it.

use std::ffi::OsString;
use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{renameat2, OFlag, RenameFlags};

use crate::agent::Replies;
use crate::protocol::{
    decode_data, encode_data, Event, FileErrorKind, FileInfo, FileKind, MAX_LIST_DEPTH, MAX_LIST_ENTRIES,
    MAX_READ_BYTES,
};

/// Where relative paths start.
const WORKSPACE: &str = "/workspace";

/// A failed file operation, answered as [`Event::FileError`].
#[derive(Debug)]
pub(crate) struct FileFailure {
    kind: FileErrorKind,
    message: String,
}

impl FileFailure {
    fn new(kind: FileErrorKind, message: String) -> FileFailure {
        FileFailure { kind, message }
    }

    /// `e` from the system while trying to `what` `path`.
    fn io(what: &str, path: &SandboxPath, e: &io::Error) -> FileFailure {
        FileFailure::new(kind_of(e), format!("cannot {what} {}: {e}", path.shown))
    }

    fn into_event(self) -> Event {
        Event::FileError { kind: self.kind, message: self.message }
    }
}

/// Run one file operation on a thread of its own and answer request `id` with its outcome.
pub(crate) fn spawn(
    id: u64,
    replies: &Replies,
    op: impl FnOnce() -> Result<Event, FileFailure> + Send + 'static,
) {
    let answer = replies.clone();
    let started = std::thread::Builder::new()
        .spawn(move || answer.send(id, op().unwrap_or_else(FileFailure::into_event)));
    // At the sandbox's process limit (threads count) no thread starts; that is an answer too.
    if let Err(e) = started {
        replies.send(
            id,
            FileFailure::new(FileErrorKind::Other, format!("cannot start a thread: {e}")).into_event(),
        );
    }
}

/// A path from a request: what the kernel is given, and its lexical normal form for answers.
struct SandboxPath {
    open: PathBuf,
    shown: String,
}

/// Check a requested path; a relative one starts at `/workspace`.
fn sandbox_path(path: &str) -> Result<SandboxPath, FileFailure> {
    if path.is_empty() {
        return Err(FileFailure::new(FileErrorKind::InvalidPath, "the path is empty".to_owned()));
    }
    if path.contains('\0') {
        return Err(FileFailure::new(
            FileErrorKind::InvalidPath,
            format!("the path {path:?} holds a NUL byte"),
        ));
    }
    // Joining an absolute path replaces the base. The path stays as given (trailing slash and
    // `..` included) for the kernel to resolve.
    let open = Path::new(WORKSPACE).join(path);
    Ok(SandboxPath { shown: normalise(&open), open })
}

/// `path` without `.`, `..` and repeated slashes, without looking at the filesystem; `..` at
/// the root stays at the root, as in the kernel.
fn normalise(path: &Path) -> String {
    let mut parts = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => parts.push(part),
            Component::ParentDir => {
                parts.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    if parts.is_empty() {
        return "/".to_owned();
    }
    parts.iter().fold(String::new(), |shown, part| shown + "/" + &part.to_string_lossy())
}

/// The error kind for an error of the system.
fn kind_of(e: &io::Error) -> FileErrorKind {
    match e.raw_os_error().map(Errno::from_raw) {
        Some(Errno::ENOENT) => FileErrorKind::NotFound,
        Some(Errno::EACCES | Errno::EPERM | Errno::EROFS) => FileErrorKind::PermissionDenied,
        Some(Errno::EEXIST) => FileErrorKind::AlreadyExists,
        Some(Errno::ENOTDIR) => FileErrorKind::NotADirectory,
        Some(Errno::EISDIR) => FileErrorKind::IsADirectory,
        Some(Errno::ENOTEMPTY) => FileErrorKind::NotEmpty,
        // open(2) of a FIFO for writing without a reader, of a socket, or of a device without
        // a driver.
        Some(Errno::ENXIO) => FileErrorKind::NotARegularFile,
        Some(Errno::ENAMETOOLONG | Errno::ELOOP) => FileErrorKind::InvalidPath,
        Some(Errno::EFBIG) => FileErrorKind::TooLarge,
        _ => FileErrorKind::Other,
    }
}

/// Open `path` with `options` and go on only with a regular file. The open itself cannot block
/// (`O_NONBLOCK`: a FIFO opens without waiting for its other end) nor give the agent a
/// controlling terminal (`O_NOCTTY`); the type is then checked on the open descriptor, so it
/// cannot change between check and use.
fn open_regular(
    path: &SandboxPath,
    options: &mut OpenOptions,
    what: &str,
) -> Result<(File, Metadata), FileFailure> {
    let flags = OFlag::O_NONBLOCK | OFlag::O_NOCTTY | OFlag::O_CLOEXEC;
    let file =
        options.custom_flags(flags.bits()).open(&path.open).map_err(|e| FileFailure::io(what, path, &e))?;
    let meta = file.metadata().map_err(|e| FileFailure::io(what, path, &e))?;
    if meta.is_dir() {
        return Err(FileFailure::new(
            FileErrorKind::IsADirectory,
            format!("cannot {what} {}: it is a directory", path.shown),
        ));
    }
    if !meta.is_file() {
        return Err(FileFailure::new(
            FileErrorKind::NotARegularFile,
            format!("cannot {what} {}: it is not a regular file", path.shown),
        ));
    }
    Ok((file, meta))
}

/// [`crate::protocol::Op::ReadFile`]: up to [`MAX_READ_BYTES`] from `offset`.
pub(crate) fn read(path: &str, offset: u64, length: Option<u64>) -> Result<Event, FileFailure> {
    let path = sandbox_path(path)?;
    let (mut file, meta) = open_regular(&path, OpenOptions::new().read(true), "read")?;
    let want = length.unwrap_or(MAX_READ_BYTES).min(MAX_READ_BYTES);
    file.seek(SeekFrom::Start(offset)).map_err(|e| FileFailure::io("read", &path, &e))?;
    let mut data = Vec::new();
    // One byte more than wanted tells whether the file goes on, even where the size is 0
    // although there is content (files of /proc).
    file.take(want + 1).read_to_end(&mut data).map_err(|e| FileFailure::io("read", &path, &e))?;
    let eof = data.len() as u64 <= want;
    data.truncate(want as usize);
    Ok(Event::FileData { data: encode_data(&data), size: meta.len(), eof })
}

/// What [`crate::protocol::Op::WriteFile`] asks for besides the path and the data.
pub(crate) struct WriteOptions {
    /// Write here and keep the rest; `None` truncates (unless appending).
    pub(crate) offset: Option<u64>,
    /// Write at the end.
    pub(crate) append: bool,
    /// Create missing parent directories first.
    pub(crate) create_parents: bool,
    /// Permission bits of a file created, before the umask.
    pub(crate) mode: Option<u32>,
}

/// [`crate::protocol::Op::WriteFile`]: write `data` (base64), creating the file if missing.
pub(crate) fn write(path: &str, data: &str, how: WriteOptions) -> Result<Event, FileFailure> {
    let path = sandbox_path(path)?;
    let other =
        |why: String| FileFailure::new(FileErrorKind::Other, format!("cannot write {}: {why}", path.shown));
    if how.append && how.offset.is_some() {
        return Err(other("offset and append exclude each other".to_owned()));
    }
    let bytes = decode_data(data).map_err(other)?;
    if how.create_parents {
        if let Some(parent) = path.open.parent() {
            fs::DirBuilder::new()
                .recursive(true)
                .create(parent)
                .map_err(|e| FileFailure::io("create the parent directories of", &path, &e))?;
        }
    }
    let mut options = OpenOptions::new();
    options.write(true).create(true).append(how.append).mode(how.mode.unwrap_or(0o644));
    let (mut file, _) = open_regular(&path, &mut options, "write")?;
    match how.offset {
        Some(offset) => file.write_all_at(&bytes, offset),
        None if how.append => file.write_all(&bytes),
        // Truncated only now that it is known to be a regular file.
        None => file.set_len(0).and_then(|()| file.write_all(&bytes)),
    }
    .map_err(|e| FileFailure::io("write", &path, &e))?;
    Ok(Event::Done)
}

/// [`crate::protocol::Op::Stat`]: the path itself, a final symlink not followed.
pub(crate) fn stat(path: &str) -> Result<Event, FileFailure> {
    let path = sandbox_path(path)?;
    let meta = fs::symlink_metadata(&path.open).map_err(|e| FileFailure::io("stat", &path, &e))?;
    Ok(Event::Stat(info(path.shown.clone(), &path.open, &meta)))
}

/// Describe an entry whose metadata is `meta` (from `lstat`), found at `open`, shown as `shown`.
fn info(shown: String, open: &Path, meta: &Metadata) -> FileInfo {
    let file_type = meta.file_type();
    let kind = if file_type.is_file() {
        FileKind::File
    } else if file_type.is_dir() {
        FileKind::Directory
    } else if file_type.is_symlink() {
        FileKind::Symlink
    } else {
        FileKind::Other
    };
    let symlink_target = match kind {
        FileKind::Symlink => fs::read_link(open).ok().map(|t| t.to_string_lossy().into_owned()),
        _ => None,
    };
    let name = match shown.rsplit_once('/') {
        Some((_, name)) if !name.is_empty() => name.to_owned(),
        _ => "/".to_owned(),
    };
    FileInfo {
        path: shown,
        name,
        kind,
        size: meta.len(),
        mode: meta.mode() & 0o7777,
        // Saturating: sandbox code can set any timestamp, and an overflow must not panic.
        modified_ms: meta.mtime().saturating_mul(1000).saturating_add(meta.mtime_nsec() / 1_000_000),
        symlink_target,
    }
}

/// [`crate::protocol::Op::List`]: the directory's entries, `depth` levels down.
pub(crate) fn list(path: &str, depth: u32) -> Result<Event, FileFailure> {
    let path = sandbox_path(path)?;
    let names = sorted_names(&path.open).map_err(|e| FileFailure::io("list", &path, &e))?;
    let mut entries = Vec::new();
    let truncated = walk(&path.open, &path.shown, names, depth.clamp(1, MAX_LIST_DEPTH), &mut entries);
    Ok(Event::Listing { entries, truncated })
}

/// The names in directory `dir`, sorted byte by byte.
fn sorted_names(dir: &Path) -> io::Result<Vec<OsString>> {
    let mut names: Vec<OsString> = fs::read_dir(dir)?.filter_map(|e| e.ok().map(|e| e.file_name())).collect();
    names.sort();
    Ok(names)
}

/// Describe `names` in `dir` into `entries`, each directory followed by its contents (sorted
/// names, depth first: the order of paths compared component by component), so that stopping
/// at [`MAX_LIST_ENTRIES`] keeps a prefix of the whole sorted listing. Returns whether it
/// stopped there.
fn walk(dir: &Path, shown: &str, names: Vec<OsString>, depth: u32, entries: &mut Vec<FileInfo>) -> bool {
    for name in names {
        if entries.len() == MAX_LIST_ENTRIES {
            return true;
        }
        let open = dir.join(&name);
        // Gone since the directory was read: nothing left to describe.
        let Ok(meta) = fs::symlink_metadata(&open) else { continue };
        let entry_shown = match shown {
            "/" => format!("/{}", name.to_string_lossy()),
            _ => format!("{shown}/{}", name.to_string_lossy()),
        };
        entries.push(info(entry_shown.clone(), &open, &meta));
        // `lstat` says directory only for a real one: a symlink to a directory is not entered.
        if depth > 1 && meta.is_dir() {
            // A directory that cannot be read is listed without its contents.
            if let Ok(inner) = sorted_names(&open) {
                if walk(&open, &entry_shown, inner, depth - 1, entries) {
                    return true;
                }
            }
        }
    }
    false
}

/// [`crate::protocol::Op::Mkdir`].
pub(crate) fn mkdir(path: &str, parents: bool, mode: Option<u32>) -> Result<Event, FileFailure> {
    let path = sandbox_path(path)?;
    fs::DirBuilder::new()
        .recursive(parents)
        .mode(mode.unwrap_or(0o755))
        .create(&path.open)
        .map_err(|e| FileFailure::io("create the directory", &path, &e))?;
    Ok(Event::Done)
}

/// [`crate::protocol::Op::Move`]: `rename(2)`, refusing an existing `to` unless `overwrite`.
pub(crate) fn rename(from: &str, to: &str, overwrite: bool) -> Result<Event, FileFailure> {
    let (from, to) = (sandbox_path(from)?, sandbox_path(to)?);
    let moved =
        if overwrite { fs::rename(&from.open, &to.open) } else { rename_noreplace(&from.open, &to.open) };
    moved.map_err(|e| {
        FileFailure::new(kind_of(&e), format!("cannot move {} to {}: {e}", from.shown, to.shown))
    })?;
    Ok(Event::Done)
}

/// `renameat2(2)` with `RENAME_NOREPLACE` refuses an existing target in the same step as the
/// rename. A filesystem without the flag (`EINVAL`: some FUSE and network ones) gets a check
/// before the rename instead, which a concurrent creation can slip past.
fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    match renameat2(None, from, None, to, RenameFlags::RENAME_NOREPLACE) {
        Err(Errno::EINVAL) => match fs::symlink_metadata(to) {
            Ok(_) => Err(io::Error::from(Errno::EEXIST)),
            Err(_) => fs::rename(from, to),
        },
        done => done.map_err(io::Error::from),
    }
}

/// [`crate::protocol::Op::Remove`]: a symlink is removed itself, and `remove_dir_all` does not
/// follow the symlinks it meets inside a directory either.
pub(crate) fn remove(path: &str, recursive: bool) -> Result<Event, FileFailure> {
    let path = sandbox_path(path)?;
    let meta = fs::symlink_metadata(&path.open).map_err(|e| FileFailure::io("remove", &path, &e))?;
    let removed = if !meta.is_dir() {
        fs::remove_file(&path.open)
    } else if recursive {
        fs::remove_dir_all(&path.open)
    } else {
        fs::remove_dir(&path.open)
    };
    removed.map_err(|e| FileFailure::io("remove", &path, &e))?;
    Ok(Event::Done)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;
    use crate::protocol::FileErrorKind as K;

    /// A fresh directory on the host for one test, removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> TempDir {
            let dir = std::env::temp_dir().join(format!("airlock-files-{tag}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        fn at(&self, name: &str) -> String {
            self.0.join(name).to_str().unwrap().to_owned()
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn failure(result: Result<Event, FileFailure>) -> FileFailure {
        result.expect_err("the operation should fail")
    }

    #[test]
    fn errno_maps_to_error_kinds() {
        let cases = [
            (Errno::ENOENT, K::NotFound),
            (Errno::EACCES, K::PermissionDenied),
            (Errno::EPERM, K::PermissionDenied),
            (Errno::EROFS, K::PermissionDenied),
            (Errno::EEXIST, K::AlreadyExists),
            (Errno::ENOTDIR, K::NotADirectory),
            (Errno::EISDIR, K::IsADirectory),
            (Errno::ENOTEMPTY, K::NotEmpty),
            (Errno::ENXIO, K::NotARegularFile),
            (Errno::ENAMETOOLONG, K::InvalidPath),
            (Errno::ELOOP, K::InvalidPath),
            (Errno::EFBIG, K::TooLarge),
            (Errno::EXDEV, K::Other),
            (Errno::ENOSPC, K::Other),
        ];
        for (errno, kind) in cases {
            assert_eq!(kind_of(&io::Error::from(errno)), kind, "{errno}");
        }
        assert_eq!(kind_of(&io::Error::from(io::ErrorKind::WriteZero)), K::Other);
    }

    #[test]
    fn empty_paths_and_nul_bytes_are_invalid() {
        for path in ["", "a\0b", "/workspace/\0"] {
            let failed = failure(stat(path));
            assert_eq!(failed.kind, K::InvalidPath, "{path:?}");
        }
    }

    #[test]
    fn paths_are_shown_normalised_and_relative_ones_start_at_the_workspace() {
        let cases = [
            ("a.txt", "/workspace/a.txt"),
            ("./a/../b/", "/workspace/b"),
            ("../../..", "/"),
            ("/", "/"),
            ("//etc//./hostname", "/etc/hostname"),
            ("/tmp/../../x", "/x"),
        ];
        for (asked, shown) in cases {
            let path = sandbox_path(asked).unwrap();
            assert_eq!(path.shown, shown, "{asked:?}");
        }
        // The kernel gets the path as asked: `..` after a symlink is its business.
        assert_eq!(sandbox_path("link/../x").unwrap().open, Path::new("/workspace/link/../x"));
    }

    #[test]
    fn failures_name_the_path_and_their_kind() {
        let dir = TempDir::new("kinds");
        let missing = failure(read(&dir.at("missing"), 0, None));
        assert_eq!(missing.kind, K::NotFound);
        assert!(missing.message.contains(&dir.at("missing")), "{}", missing.message);
        assert_eq!(failure(read(&dir.at(""), 0, None)).kind, K::IsADirectory);
        assert_eq!(failure(read("/dev/zero", 0, None)).kind, K::NotARegularFile);
        assert_eq!(failure(list("/dev/null", 1)).kind, K::NotADirectory);
        mkdir(&dir.at("d/e"), true, None).unwrap();
        assert_eq!(failure(mkdir(&dir.at("d"), false, None)).kind, K::AlreadyExists);
        assert_eq!(failure(remove(&dir.at("d"), false)).kind, K::NotEmpty);
        let bad = failure(write(
            &dir.at("f"),
            "not base64!",
            WriteOptions { offset: None, append: false, create_parents: false, mode: None },
        ));
        assert_eq!(bad.kind, K::Other);
        assert!(bad.message.contains("base64"), "{}", bad.message);
    }

    #[test]
    fn a_read_says_where_the_file_ends() {
        let dir = TempDir::new("eof");
        fs::write(dir.at("f"), b"0123456789").unwrap();
        let read_at = |offset, length| match read(&dir.at("f"), offset, length).unwrap() {
            Event::FileData { data, size, eof } => (decode_data(&data).unwrap(), size, eof),
            other => panic!("{other:?}"),
        };
        assert_eq!(read_at(0, Some(4)), (b"0123".to_vec(), 10, false));
        assert_eq!(read_at(6, Some(4)), (b"6789".to_vec(), 10, true));
        assert_eq!(read_at(8, None), (b"89".to_vec(), 10, true));
        assert_eq!(read_at(20, None), (Vec::new(), 10, true));
        // /proc reports size 0 for files with content.
        match read("/proc/self/status", 0, Some(4)).unwrap() {
            Event::FileData { size: 0, eof: false, .. } => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn listing_does_not_enter_symlinked_directories() {
        let dir = TempDir::new("list");
        fs::create_dir_all(dir.0.join("a/b")).unwrap();
        fs::write(dir.0.join("a/b/c"), b"").unwrap();
        fs::write(dir.0.join("a-z"), b"").unwrap();
        symlink(&dir.0, dir.0.join("loop")).unwrap();
        let Event::Listing { entries, truncated } = list(&dir.at(""), MAX_LIST_DEPTH + 5).unwrap() else {
            panic!("not a listing")
        };
        let root = dir.0.to_str().unwrap();
        let names: Vec<String> =
            entries.iter().map(|e| e.path.strip_prefix(root).unwrap().to_owned()).collect();
        assert_eq!(names, ["/a", "/a/b", "/a/b/c", "/a-z", "/loop"]);
        assert_eq!(entries[4].kind, FileKind::Symlink);
        assert_eq!(entries[4].symlink_target.as_deref(), Some(root));
        assert!(!truncated);
    }
}
