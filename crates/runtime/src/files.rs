//! File operations in a running sandbox: read, write, stat, list, mkdir, rename and remove,
//! each one request to the sandbox's agent.
//!
//! The agent runs inside the sandbox, with its root and its uid, so the kernel resolves every
//! path there: `..`, symlinks planted by sandbox code and `/proc/self/root` lead to the
//! sandbox's own files, never the host's. Nothing here looks at a path beyond passing it on; a
//! second resolver on the host could only disagree with the kernel.
//!
//! One read answers with at most [`MAX_READ_BYTES`]; larger files are read in pieces, by the
//! caller with [`Runtime::read_file`] or with a [`FileReader`], which asks for the next piece
//! only when the previous one has been taken (an HTTP download advances as fast as its client
//! reads). Writes are pieces too: the caller sends them with growing offsets.

use std::sync::Arc;

use airlock_agent::protocol::{decode_data, encode_data, Event, FileErrorKind, FileInfo, Op, MAX_READ_BYTES};

use crate::agent_conn::AgentConn;
use crate::error::RuntimeError;
use crate::runtime::Runtime;

/// Bytes a [`FileReader`] asks for at a time: a quarter of what one read may carry, so a
/// download holds little memory and its first bytes leave early.
const READER_PIECE_BYTES: u64 = MAX_READ_BYTES / 4;

/// Part of a file, as one read found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileChunk {
    /// The bytes read.
    pub data: Vec<u8>,
    /// The size of the whole file at the time of the read (0 for most files of `/proc`, which
    /// have content all the same).
    pub size: u64,
    /// Whether the read reached the end of the file.
    pub eof: bool,
}

/// A directory's contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    /// Everything found, sorted by path component by component.
    pub entries: Vec<FileInfo>,
    /// Whether entries were left out beyond the agent's maximum.
    pub truncated: bool,
}

/// How [`Runtime::write_file`] writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// Write at this offset and keep the rest of the file; `None` truncates the file first.
    pub offset: Option<u64>,
    /// Create missing parent directories first.
    pub create_parents: bool,
    /// Permission bits of a file this creates (less the sandbox's umask); 0o644 when `None`.
    /// An existing file keeps its mode.
    pub mode: Option<u32>,
}

/// A file being read piece by piece, from a window chosen after its size is known.
pub struct FileReader {
    conn: Arc<AgentConn>,
    sandbox_id: String,
    path: String,
    size: Option<u64>,
    offset: u64,
    /// Bytes still to deliver; `None` reads until the end of the file.
    remaining: Option<u64>,
    done: bool,
}

impl FileReader {
    /// The file's size when it was opened; `None` for a file that reports 0 but has content
    /// (files of `/proc`), which is read to its end instead.
    pub fn size(&self) -> Option<u64> {
        self.size
    }

    /// Deliver only `length` bytes from `start` on, e.g. for an HTTP range. The caller keeps
    /// the window within [`FileReader::size`].
    pub fn window(&mut self, start: u64, length: u64) {
        self.offset = start;
        self.remaining = Some(length);
        self.done = length == 0;
    }

    /// The next piece, or `None` once the window (or the file) is read. A file that shrank
    /// below its window meanwhile is an error: the caller has announced its length.
    pub async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, RuntimeError> {
        if self.done {
            return Ok(None);
        }
        let want = self.remaining.map_or(READER_PIECE_BYTES, |r| r.min(READER_PIECE_BYTES));
        let chunk = read_at(&self.conn, &self.sandbox_id, &self.path, self.offset, want).await?;
        let got = chunk.data.len() as u64;
        self.offset += got;
        match &mut self.remaining {
            Some(remaining) => {
                if got == 0 {
                    self.done = true;
                    return Err(RuntimeError::File {
                        sandbox_id: self.sandbox_id.clone(),
                        kind: FileErrorKind::Other,
                        message: format!("{} shrank while it was being read", self.path),
                    });
                }
                *remaining -= got;
                self.done = *remaining == 0;
            }
            None => self.done = chunk.eof,
        }
        Ok((got > 0).then_some(chunk.data))
    }
}

impl Runtime {
    /// Read up to `length` bytes (at most [`MAX_READ_BYTES`]) of a regular file from `offset`.
    pub async fn read_file(
        &self,
        owner: Option<&str>,
        id: &str,
        path: &str,
        offset: u64,
        length: u64,
    ) -> Result<FileChunk, RuntimeError> {
        let conn = self.running_agent(owner, id, "read a file")?;
        read_at(&conn, id, path, offset, length).await
    }

    /// Open a regular file for reading in pieces: one empty read learns its size and whether
    /// it can be read at all (missing, a directory, a FIFO) before anything is sent on.
    pub async fn open_file(
        &self,
        owner: Option<&str>,
        id: &str,
        path: &str,
    ) -> Result<FileReader, RuntimeError> {
        let conn = self.running_agent(owner, id, "read a file")?;
        let probe = read_at(&conn, id, path, 0, 0).await?;
        // An empty read still looks one byte ahead: `eof` is false where there is content.
        let size = (probe.size > 0 || probe.eof).then_some(probe.size);
        Ok(FileReader {
            conn,
            sandbox_id: id.to_owned(),
            path: path.to_owned(),
            size,
            offset: 0,
            remaining: size,
            done: size == Some(0),
        })
    }

    /// Write `data` to a regular file, creating it if missing (see [`WriteOptions`]).
    pub async fn write_file(
        &self,
        owner: Option<&str>,
        id: &str,
        path: &str,
        data: &[u8],
        how: WriteOptions,
    ) -> Result<(), RuntimeError> {
        let conn = self.running_agent(owner, id, "write a file")?;
        let op = Op::WriteFile {
            path: path.to_owned(),
            data: encode_data(data),
            offset: how.offset,
            append: false,
            create_parents: how.create_parents,
            mode: how.mode,
        };
        expect_done(call(&conn, id, op).await?, id, "write_file")
    }

    /// Describe one path, without following a final symlink.
    pub async fn stat(&self, owner: Option<&str>, id: &str, path: &str) -> Result<FileInfo, RuntimeError> {
        let conn = self.running_agent(owner, id, "stat a file")?;
        match call(&conn, id, Op::Stat { path: path.to_owned() }).await? {
            Event::Stat(info) => Ok(info),
            other => Err(unexpected(id, "stat", &other)),
        }
    }

    /// List a directory `depth` levels down, never entering a symlink.
    pub async fn list_dir(
        &self,
        owner: Option<&str>,
        id: &str,
        path: &str,
        depth: u32,
    ) -> Result<Listing, RuntimeError> {
        let conn = self.running_agent(owner, id, "list a directory")?;
        match call(&conn, id, Op::List { path: path.to_owned(), depth }).await? {
            Event::Listing { entries, truncated } => Ok(Listing { entries, truncated }),
            other => Err(unexpected(id, "list", &other)),
        }
    }

    /// Create a directory; with `parents`, also missing parents, and an existing directory is
    /// fine.
    pub async fn mkdir(
        &self,
        owner: Option<&str>,
        id: &str,
        path: &str,
        parents: bool,
        mode: Option<u32>,
    ) -> Result<(), RuntimeError> {
        let conn = self.running_agent(owner, id, "create a directory")?;
        let op = Op::Mkdir { path: path.to_owned(), parents, mode };
        expect_done(call(&conn, id, op).await?, id, "mkdir")
    }

    /// Rename `from` to `to` (one filesystem); without `overwrite` an existing `to` is refused.
    pub async fn rename(
        &self,
        owner: Option<&str>,
        id: &str,
        from: &str,
        to: &str,
        overwrite: bool,
    ) -> Result<(), RuntimeError> {
        let conn = self.running_agent(owner, id, "move a file")?;
        let op = Op::Move { from: from.to_owned(), to: to.to_owned(), overwrite };
        expect_done(call(&conn, id, op).await?, id, "move")
    }

    /// Remove a file, a symlink (never what it points to) or a directory; one with contents
    /// only with `recursive`.
    pub async fn remove_path(
        &self,
        owner: Option<&str>,
        id: &str,
        path: &str,
        recursive: bool,
    ) -> Result<(), RuntimeError> {
        let conn = self.running_agent(owner, id, "remove a file")?;
        let op = Op::Remove { path: path.to_owned(), recursive };
        expect_done(call(&conn, id, op).await?, id, "remove")
    }
}

async fn read_at(
    conn: &AgentConn,
    id: &str,
    path: &str,
    offset: u64,
    length: u64,
) -> Result<FileChunk, RuntimeError> {
    let op = Op::ReadFile { path: path.to_owned(), offset, length: Some(length.min(MAX_READ_BYTES)) };
    match call(conn, id, op).await? {
        Event::FileData { data, size, eof } => {
            let data = decode_data(&data).map_err(|e| RuntimeError::AgentUnavailable {
                id: id.to_owned(),
                reason: format!("it answered read_file with {e}"),
            })?;
            Ok(FileChunk { data, size, eof })
        }
        other => Err(unexpected(id, "read_file", &other)),
    }
}

/// Send one file operation; a `file_error` answer becomes [`RuntimeError::File`].
async fn call(conn: &AgentConn, id: &str, op: Op) -> Result<Event, RuntimeError> {
    match conn.call(op).await {
        Ok(Event::FileError { kind, message }) => {
            Err(RuntimeError::File { sandbox_id: id.to_owned(), kind, message })
        }
        Ok(Event::Error { message }) => Err(RuntimeError::AgentRefused { id: id.to_owned(), message }),
        Ok(event) => Ok(event),
        Err(_) => Err(RuntimeError::AgentUnavailable {
            id: id.to_owned(),
            reason: "its connection closed before it answered".to_owned(),
        }),
    }
}

fn expect_done(event: Event, id: &str, op: &str) -> Result<(), RuntimeError> {
    match event {
        Event::Done => Ok(()),
        other => Err(unexpected(id, op, &other)),
    }
}

/// An answer of the wrong kind means the agent is not the one this runtime speaks to.
fn unexpected(id: &str, op: &str, event: &Event) -> RuntimeError {
    let kind = serde_json::to_value(event)
        .ok()
        .and_then(|v| v.get("kind").and_then(|k| k.as_str()).map(str::to_owned))
        .unwrap_or_default();
    RuntimeError::AgentUnavailable { id: id.to_owned(), reason: format!("it answered {op} with `{kind}`") }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use airlock_agent::protocol::{Request, Response};
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::net::UnixStream;

    use super::*;

    /// An agent that answers `read_file` from `file`, reporting `size` as its size (0 for a
    /// file of /proc), as the real one does: at most `length` bytes and one byte of look-ahead.
    fn fake_agent(file: Arc<Mutex<Vec<u8>>>, reported_size: Option<u64>) -> Arc<AgentConn> {
        let (ours, theirs) = UnixStream::pair().unwrap();
        tokio::spawn(async move {
            let (reader, mut writer) = theirs.into_split();
            let mut lines = BufReader::new(reader).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let request: Request = serde_json::from_str(&line).unwrap();
                let Op::ReadFile { offset, length, .. } = request.op else { panic!("{line}") };
                let bytes = file.lock().unwrap().clone();
                let start = (offset as usize).min(bytes.len());
                let end = (start + length.unwrap() as usize).min(bytes.len());
                let event = Event::FileData {
                    data: encode_data(&bytes[start..end]),
                    size: reported_size.unwrap_or(bytes.len() as u64),
                    eof: end == bytes.len(),
                };
                let mut answer = serde_json::to_vec(&Response { id: request.id, event }).unwrap();
                answer.push(b'\n');
                writer.write_all(&answer).await.unwrap();
            }
        });
        AgentConn::new(ours)
    }

    fn reader(conn: Arc<AgentConn>, size: Option<u64>) -> FileReader {
        FileReader {
            conn,
            sandbox_id: "sbx".into(),
            path: "/f".into(),
            size,
            offset: 0,
            remaining: size,
            done: size == Some(0),
        }
    }

    async fn drain(reader: &mut FileReader) -> Result<Vec<u8>, RuntimeError> {
        let mut all = Vec::new();
        while let Some(piece) = reader.next_chunk().await? {
            assert!(piece.len() as u64 <= READER_PIECE_BYTES);
            all.extend_from_slice(&piece);
        }
        Ok(all)
    }

    #[tokio::test]
    async fn a_reader_delivers_its_window_in_pieces_and_no_more() {
        let bytes: Vec<u8> = (0..3 * READER_PIECE_BYTES + 7).map(|i| (i % 251) as u8).collect();
        let file = Arc::new(Mutex::new(bytes.clone()));
        let size = bytes.len() as u64;
        let mut whole = reader(fake_agent(Arc::clone(&file), None), Some(size));
        assert_eq!(drain(&mut whole).await.unwrap(), bytes);
        let mut part = reader(fake_agent(Arc::clone(&file), None), Some(size));
        part.window(READER_PIECE_BYTES - 3, READER_PIECE_BYTES + 6);
        let start = (READER_PIECE_BYTES - 3) as usize;
        assert_eq!(drain(&mut part).await.unwrap(), &bytes[start..start + READER_PIECE_BYTES as usize + 6]);
        // A file that grew after it was opened is sent as long as it was announced.
        file.lock().unwrap().extend_from_slice(b"later");
        let mut grown = reader(fake_agent(Arc::clone(&file), None), Some(size));
        assert_eq!(drain(&mut grown).await.unwrap().len() as u64, size);
    }

    #[tokio::test]
    async fn a_file_that_shrinks_below_its_window_is_an_error() {
        let file = Arc::new(Mutex::new(vec![1u8; 10]));
        let mut shrunk = reader(fake_agent(Arc::clone(&file), None), Some(20));
        let e = drain(&mut shrunk).await.unwrap_err();
        assert_eq!(e.code(), "FILE_OPERATION_FAILED");
        assert!(e.to_string().contains("shrank"), "{e}");
        assert_eq!(shrunk.next_chunk().await.unwrap(), None, "nothing after the error");
    }

    #[tokio::test]
    async fn a_file_of_unknown_size_is_read_to_its_end() {
        let bytes = vec![7u8; READER_PIECE_BYTES as usize + 1];
        let mut proc_file = reader(fake_agent(Arc::new(Mutex::new(bytes.clone())), Some(0)), None);
        assert_eq!(drain(&mut proc_file).await.unwrap(), bytes);
    }
}
