//! Messages between the runtime and the agent: newline-delimited JSON, one object per line.
//! Requests carry an `id` that every answer to them repeats, so several commands can run at once
//! and their output can interleave on the one socket.

mod code;

use base64::Engine;
pub use code::{CodeMode, ContextStartRequest, Language};
use serde::{Deserialize, Serialize};

/// A request from the runtime.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Chosen by the runtime, unique on the connection; repeated in every answer.
    pub id: u64,
    /// What to do.
    #[serde(flatten)]
    pub op: Op,
}

/// What the runtime asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// Answer with [`Event::Pong`]: the agent is up.
    Ping,
    /// Listen on `127.0.0.1:{port}` in the sandbox's network namespace and hand the listening
    /// socket to the runtime, which accepts the sandbox's connections to that port on the host
    /// side (the egress proxy). Answered with [`Event::Socket`] or [`Event::Error`].
    ListenLoopback {
        /// The port inside the sandbox.
        port: u16,
    },
    /// Connect to `port` on the sandbox's loopback (`127.0.0.1`, then `::1`) and hand the
    /// connected socket to the runtime (ingress). Answered with [`Event::Socket`] or
    /// [`Event::Error`].
    ConnectLoopback {
        /// The port inside the sandbox.
        port: u16,
    },
    /// Start a command. Answered with [`Event::Started`], any number of [`Event::Output`], then
    /// one [`Event::Exit`]; or with one [`Event::Exit`] carrying `spawn_error`.
    Start(StartRequest),
    /// Write to the standard input of a command started with `keep_stdin_open`. Answered with
    /// [`Event::Done`] once handed to the command's writer.
    Stdin {
        /// The id of the command's `start` request.
        command: u64,
        /// Text to write.
        data: String,
    },
    /// Close the standard input of a command (it then reads end of file).
    CloseStdin {
        /// The id of the command's `start` request.
        command: u64,
    },
    /// Send a signal to the command's main process.
    Signal {
        /// The id of the command's `start` request.
        command: u64,
        /// Signal number, e.g. 2 for SIGINT or 15 for SIGTERM.
        signal: i32,
    },
    /// Kill the command and every process it started; its exit then says `killed`.
    Kill {
        /// The id of the command's `start` request.
        command: u64,
    },
    /// Start a code context's kernel. Answered with [`Event::ContextReady`] once it is ready,
    /// or [`Event::Error`].
    ContextStart(ContextStartRequest),
    /// Send SIGINT to a context's kernel and its process group, which interrupts the run going
    /// on in it. Answered with [`Event::Done`] (also when no run is going on).
    Interrupt {
        /// The context's name.
        context: String,
    },
    /// Stop a context: its kernel and everything it started are killed. Answered with
    /// [`Event::Done`] once they are dead.
    ContextStop {
        /// The context's name.
        context: String,
    },
    /// Read part of a regular file. Answered with [`Event::FileData`] or [`Event::FileError`].
    ReadFile {
        /// The file: absolute inside the sandbox, or relative to `/workspace`.
        path: String,
        /// Where to start reading.
        #[serde(default)]
        offset: u64,
        /// Bytes to read at most; never more than [`MAX_READ_BYTES`], which is also the default.
        #[serde(default)]
        length: Option<u64>,
    },
    /// Write to a regular file, creating it if missing. Answered with [`Event::Done`] or
    /// [`Event::FileError`].
    WriteFile {
        /// The file: absolute inside the sandbox, or relative to `/workspace`.
        path: String,
        /// The bytes to write, in base64 ([`encode_data`]).
        data: String,
        /// Write at this offset and keep the rest of the file; without it (and without
        /// `append`) the file is truncated and written from the start.
        #[serde(default)]
        offset: Option<u64>,
        /// Write at the end of the file; cannot be combined with `offset`.
        #[serde(default)]
        append: bool,
        /// Create missing parent directories first.
        #[serde(default)]
        create_parents: bool,
        /// Permission bits of a file this creates (less the umask); default 0o644. An existing
        /// file keeps its mode.
        #[serde(default)]
        mode: Option<u32>,
    },
    /// Describe one path without following a final symlink. Answered with [`Event::Stat`] or
    /// [`Event::FileError`].
    Stat {
        /// The path: absolute inside the sandbox, or relative to `/workspace`.
        path: String,
    },
    /// List a directory. Answered with [`Event::Listing`] or [`Event::FileError`].
    List {
        /// The directory: absolute inside the sandbox, or relative to `/workspace`.
        path: String,
        /// Levels to descend: 1 (also for 0) lists the directory's own entries; more than
        /// [`MAX_LIST_DEPTH`] counts as that.
        #[serde(default = "one")]
        depth: u32,
    },
    /// Create a directory. Answered with [`Event::Done`] or [`Event::FileError`].
    Mkdir {
        /// The directory: absolute inside the sandbox, or relative to `/workspace`.
        path: String,
        /// Create missing parents too, and accept a directory that already exists.
        #[serde(default)]
        parents: bool,
        /// Permission bits of the directories this creates (less the umask); default 0o755.
        #[serde(default)]
        mode: Option<u32>,
    },
    /// Rename a file or directory (`rename(2)`: both ends on one filesystem). Answered with
    /// [`Event::Done`] or [`Event::FileError`].
    Move {
        /// What to move.
        from: String,
        /// Its new path.
        to: String,
        /// Replace what is at `to`; without it an existing `to` is an `already_exists` error.
        #[serde(default)]
        overwrite: bool,
    },
    /// Remove a file, symlink or directory; a symlink is removed itself, never what it points
    /// to. Answered with [`Event::Done`] or [`Event::FileError`].
    Remove {
        /// The path: absolute inside the sandbox, or relative to `/workspace`.
        path: String,
        /// Remove a directory with everything in it; without it only an empty one.
        #[serde(default)]
        recursive: bool,
    },
}

/// The most bytes one [`Op::ReadFile`] answers with: 4 MiB, about 5.6 MB of base64 on one line.
pub const MAX_READ_BYTES: u64 = 4 << 20;

/// The deepest an [`Op::List`] descends.
pub const MAX_LIST_DEPTH: u32 = 20;

/// The most entries one [`Event::Listing`] carries.
pub const MAX_LIST_ENTRIES: usize = 10_000;

fn one() -> u32 {
    1
}

/// Encode file contents for [`Op::WriteFile`] the way [`Event::FileData`] carries them: standard
/// base64 with padding (RFC 4648, section 4).
pub fn encode_data(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Decode file contents encoded as by [`encode_data`]; the error says what is wrong.
pub fn decode_data(text: &str) -> Result<Vec<u8>, String> {
    base64::engine::general_purpose::STANDARD.decode(text).map_err(|e| format!("bad base64: {e}"))
}

/// One command to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartRequest {
    /// Program and arguments; `argv[0]` is looked up in `PATH` when it has no slash.
    pub argv: Vec<String>,
    /// Environment added to the agent's own.
    #[serde(default)]
    pub env: Vec<(String, String)>,
    /// Working directory inside the sandbox.
    pub cwd: String,
    /// Kill the command and every process it started after this many milliseconds.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Text written to the command's standard input first.
    #[serde(default)]
    pub stdin: Option<String>,
    /// Keep standard input open for [`Op::Stdin`] until [`Op::CloseStdin`]; otherwise it ends
    /// after `stdin` (or at once).
    #[serde(default)]
    pub keep_stdin_open: bool,
    /// Bytes of stdout plus stderr passed on; the rest is read and dropped.
    pub max_output_bytes: u64,
}

/// An answer from the agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// The request's id.
    pub id: u64,
    /// What happened.
    #[serde(flatten)]
    pub event: Event,
}

/// Which output stream a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// The agent is up.
    Pong,
    /// The answer that carries a socket: its descriptor travels with this line (SCM_RIGHTS).
    Socket,
    /// A command's main process started.
    Started {
        /// Its pid inside the sandbox.
        pid: i32,
    },
    /// A chunk of a command's output, in the order it was written. Chunks never split a UTF-8
    /// sequence; bytes that are not UTF-8 arrive as U+FFFD.
    Output {
        /// Which stream.
        stream: OutputStream,
        /// The text.
        data: String,
    },
    /// A command ended.
    Exit(ExitInfo),
    /// A `stdin`, `close_stdin`, `signal` or `kill` request, or a file operation that answers
    /// nothing else, was carried out.
    Done,
    /// The request could not be carried out.
    Error {
        /// What went wrong.
        message: String,
    },
    /// Part of a file, answering [`Op::ReadFile`].
    FileData {
        /// The bytes read, in base64 ([`decode_data`]).
        data: String,
        /// The size of the whole file when it was read.
        size: u64,
        /// Whether the read reached the end of the file.
        eof: bool,
    },
    /// One path, answering [`Op::Stat`].
    Stat(FileInfo),
    /// A directory's contents, answering [`Op::List`].
    Listing {
        /// Everything found, sorted by path component by component (a directory comes right
        /// before its contents).
        entries: Vec<FileInfo>,
        /// Whether entries were left out beyond [`MAX_LIST_ENTRIES`].
        truncated: bool,
    },
    /// A context's kernel is ready, answering [`Op::ContextStart`]. Four descriptors come with
    /// it: the write end of the kernel's request pipe, then the read ends of its control, stdout
    /// and stderr pipes; the runtime drives the kernel's runs through them.
    ContextReady {
        /// The kernel's pid inside the sandbox.
        pid: i32,
    },
    /// A file operation failed.
    FileError {
        /// What kind of failure, for the caller to act on; `code` in JSON, since `kind` names
        /// the event.
        #[serde(rename = "code")]
        kind: FileErrorKind,
        /// What went wrong, naming the path.
        message: String,
    },
}

impl Event {
    /// Whether this event is the last one of a stream of answers ([`Op::Start`]).
    pub fn ends_stream(&self) -> bool {
        matches!(self, Event::Exit(_) | Event::Error { .. })
    }

    /// How many descriptors come with this event.
    pub fn passed_fds(&self) -> usize {
        match self {
            Event::Socket => 1,
            Event::ContextReady { .. } => 4,
            _ => 0,
        }
    }
}

/// One file, directory or other entry, as [`Op::Stat`] and [`Op::List`] describe it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileInfo {
    /// Its absolute path inside the sandbox as asked, with `.` and `..` removed lexically (which
    /// may differ from where the kernel resolved it through a symlink).
    pub path: String,
    /// Its last path component (`/` for the root).
    pub name: String,
    /// What it is; `type` in JSON, since `kind` names the event.
    #[serde(rename = "type")]
    pub kind: FileKind,
    /// Size in bytes.
    pub size: u64,
    /// Permission bits (`0o7777` at most).
    pub mode: u32,
    /// Last modification, in milliseconds since the Unix epoch.
    pub modified_ms: i64,
    /// Where a symlink points, as written in it.
    pub symlink_target: Option<String>,
}

/// What kind of entry a [`FileInfo`] describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    /// A regular file.
    File,
    /// A directory.
    Directory,
    /// A symbolic link (never followed by [`Op::Stat`] or [`Op::List`]).
    Symlink,
    /// A FIFO, socket or device node.
    Other,
}

/// Why a file operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileErrorKind {
    /// The path, or a directory on the way, does not exist (`ENOENT`).
    NotFound,
    /// The sandbox may not do this there, e.g. write outside `/workspace` and `/tmp`
    /// (`EACCES`, `EPERM`, `EROFS`).
    PermissionDenied,
    /// Something is already there (`EEXIST`).
    AlreadyExists,
    /// A directory was needed (`ENOTDIR`).
    NotADirectory,
    /// A directory was not expected (`EISDIR`).
    IsADirectory,
    /// The directory is not empty (`ENOTEMPTY`).
    NotEmpty,
    /// Only regular files are read and written: not FIFOs, sockets or devices (`ENXIO` too).
    NotARegularFile,
    /// The path is empty, holds a NUL byte, is too long or loops through symlinks.
    InvalidPath,
    /// The file would grow beyond the sandbox's file size limit (`EFBIG`).
    TooLarge,
    /// Anything else; the message says what.
    Other,
}

/// The end of one command.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitInfo {
    /// Exit code, when the command exited.
    pub exit_code: Option<i32>,
    /// Signal number, when it was killed.
    pub signal: Option<i32>,
    /// Whether its timeout ended it.
    pub timed_out: bool,
    /// Whether a [`Op::Kill`] ended it.
    pub killed: bool,
    /// Whether output beyond `max_output_bytes` was dropped.
    pub output_truncated: bool,
    /// Bytes of stdout the command wrote (kept or not).
    pub stdout_bytes: u64,
    /// Bytes of stderr the command wrote (kept or not).
    pub stderr_bytes: u64,
    /// Wall-clock time from start to end in milliseconds.
    pub duration_ms: u64,
    /// User CPU time of the command and everything it started, in milliseconds.
    pub user_cpu_ms: u64,
    /// System CPU time of the command and everything it started, in milliseconds.
    pub system_cpu_ms: u64,
    /// Peak resident memory of its largest process, in bytes.
    pub max_rss_bytes: u64,
    /// Why the command could not be started, if it could not (`exit_code` is then 127 or 126).
    pub spawn_error: Option<String>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn file_requests_fill_in_their_defaults() {
        let read: Request = serde_json::from_value(json!({"id": 1, "op": "read_file", "path": "a"})).unwrap();
        assert_eq!(read.op, Op::ReadFile { path: "a".into(), offset: 0, length: None });
        let list: Request = serde_json::from_value(json!({"id": 2, "op": "list", "path": "/"})).unwrap();
        assert_eq!(list.op, Op::List { path: "/".into(), depth: 1 });
        let write: Request =
            serde_json::from_value(json!({"id": 3, "op": "write_file", "path": "a", "data": ""})).unwrap();
        assert_eq!(
            write.op,
            Op::WriteFile {
                path: "a".into(),
                data: String::new(),
                offset: None,
                append: false,
                create_parents: false,
                mode: None
            }
        );
    }

    #[test]
    fn fields_named_kind_do_not_collide_with_the_event_tag() {
        let error = Event::FileError { kind: FileErrorKind::NotARegularFile, message: "m".into() };
        let text = serde_json::to_value(Response { id: 4, event: error.clone() }).unwrap();
        assert_eq!(
            text,
            json!({"id": 4, "kind": "file_error", "code": "not_a_regular_file", "message": "m"})
        );
        assert_eq!(serde_json::from_value::<Response>(text).unwrap().event, error);
        let info = FileInfo {
            path: "/l".into(),
            name: "l".into(),
            kind: FileKind::Symlink,
            size: 1,
            mode: 0o777,
            modified_ms: 5,
            symlink_target: Some("/".into()),
        };
        let text = serde_json::to_value(Response { id: 5, event: Event::Stat(info.clone()) }).unwrap();
        assert_eq!((&text["kind"], &text["type"]), (&json!("stat"), &json!("symlink")));
        assert_eq!(serde_json::from_value::<Response>(text).unwrap().event, Event::Stat(info));
    }

    #[test]
    fn file_data_is_standard_base64_with_padding() {
        assert_eq!(encode_data(&[0xfb, 0xff]), "+/8=");
        assert_eq!(decode_data("+/8=").unwrap(), [0xfb, 0xff]);
        assert!(decode_data("-_8").is_err());
    }
}
