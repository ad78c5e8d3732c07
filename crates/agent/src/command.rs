//! One command, from start to exit: start its runner, feed its standard input, pass its output
//! on as it comes (capped), and report how it ended.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Instant;

use crate::agent::{Replies, Running, Table};
use crate::protocol::{Event, ExitInfo, OutputStream, StartRequest};
use crate::runner::{Frame, RunnerExit};
use crate::utf8::Utf8Chunks;

/// Register command `id` in `table` before anything else is read from the runtime, so that a
/// `stdin` or `kill` sent right after `start` finds it; then run it on a thread of its own.
pub(crate) fn start(
    id: u64,
    start: StartRequest,
    runner: Arc<Vec<OsString>>,
    table: &Table,
    replies: &Replies,
) {
    let feeds_stdin = start.stdin.is_some() || start.keep_stdin_open;
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    if let Some(text) = &start.stdin {
        let _ = tx.send(text.clone().into_bytes());
    }
    let killed = Arc::new(AtomicBool::new(false));
    // Without `keep_stdin_open`, the sender is dropped here and the command reads end of file
    // after `stdin`.
    let stdin = Some(tx).filter(|_| start.keep_stdin_open);
    lock(table).insert(id, Running { runner_pid: None, main_pid: None, stdin, killed: Arc::clone(&killed) });
    let (table, replies) = (Arc::clone(table), replies.clone());
    let input = feeds_stdin.then_some(rx);
    let (table_for_thread, replies_for_thread) = (Arc::clone(&table), replies.clone());
    let started = std::thread::Builder::new()
        .spawn(move || run(id, &start, &runner, input, &killed, &table_for_thread, &replies_for_thread));
    // At the sandbox's process limit (threads count) no thread starts: the command fails, the
    // agent goes on.
    if let Err(e) = started {
        lock(&table).remove(&id);
        replies.send(id, spawn_failed(format!("cannot start a thread for the command: {e}")));
    }
}

fn run(
    id: u64,
    start: &StartRequest,
    runner: &[OsString],
    input: Option<mpsc::Receiver<Vec<u8>>>,
    killed: &AtomicBool,
    table: &Table,
    replies: &Replies,
) {
    let started = Instant::now();
    let Some((program, lead)) = runner.split_first() else {
        lock(table).remove(&id);
        replies.send(id, spawn_failed("no runner configured".to_owned()));
        return;
    };
    let mut command = Command::new(program);
    command.args(lead).arg("--cwd").arg(&start.cwd);
    if let Some(ms) = start.timeout_ms {
        command.arg("--timeout-ms").arg(ms.to_string());
    }
    command.arg("--").args(&start.argv).envs(start.env.iter().map(|(k, v)| (k, v)));
    command.stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() });
    command.stdout(Stdio::piped()).stderr(Stdio::inherit());
    let mut child = match crate::spawn::spawn(&mut command, None) {
        Ok(c) => c,
        Err(e) => {
            lock(table).remove(&id);
            replies.send(id, spawn_failed(format!("cannot start the runner: {e}")));
            return;
        }
    };
    if let (Some(pipe), Some(rx)) = (child.stdin.take(), input) {
        // Written from a thread: a command that does not read must not hold up its output.
        // Without a thread the pipe is dropped and the command reads end of file.
        let _ = std::thread::Builder::new().spawn(move || {
            let mut pipe = pipe;
            for chunk in rx {
                if pipe.write_all(&chunk).is_err() {
                    return;
                }
            }
        });
    }
    let runner_pid = child.id() as i32;
    if let Some(entry) = lock(table).get_mut(&id) {
        entry.runner_pid = Some(runner_pid);
    }
    // A kill that came before the runner existed found nothing to kill: do it now.
    if killed.load(Ordering::SeqCst) {
        crate::runner::kill_tree(runner_pid);
    }

    let mut exit = ExitInfo::default();
    let mut runner_exit: Option<RunnerExit> = None;
    let mut decoders = [Utf8Chunks::default(), Utf8Chunks::default()];
    let mut passed = 0u64;
    if let Some(mut frames) = child.stdout.take() {
        while let Some((frame, body)) = read_frame(&mut frames) {
            let (stream, slot) = match frame {
                Frame::Started => {
                    if let Some(pid) = std::str::from_utf8(&body).ok().and_then(|t| t.parse().ok()) {
                        if let Some(entry) = lock(table).get_mut(&id) {
                            entry.main_pid = Some(pid);
                        }
                        replies.send(id, Event::Started { pid });
                    }
                    // A kill between the runner's start and its command's found no process
                    // under the runner; the command exists now.
                    if killed.load(Ordering::SeqCst) {
                        crate::runner::kill_tree(runner_pid);
                    }
                    continue;
                }
                Frame::Exit => {
                    runner_exit = serde_json::from_slice(&body).ok();
                    continue;
                }
                Frame::Stdout => (OutputStream::Stdout, 0),
                Frame::Stderr => (OutputStream::Stderr, 1),
            };
            if slot == 0 {
                exit.stdout_bytes += body.len() as u64;
            } else {
                exit.stderr_bytes += body.len() as u64;
            }
            let room = start.max_output_bytes.saturating_sub(passed).min(body.len() as u64) as usize;
            exit.output_truncated |= room < body.len();
            passed += room as u64;
            let data = decoders[slot].push(&body[..room]);
            if !data.is_empty() {
                replies.send(id, Event::Output { stream, data });
            }
        }
    }
    let runner_status = child.wait();
    lock(table).remove(&id);
    if !exit.output_truncated {
        for (slot, stream) in [(0, OutputStream::Stdout), (1, OutputStream::Stderr)] {
            let data = decoders[slot].finish();
            if !data.is_empty() {
                replies.send(id, Event::Output { stream, data });
            }
        }
    }
    match runner_exit {
        Some(e) => {
            exit.exit_code = e.exit_code;
            exit.signal = e.signal;
            exit.timed_out = e.timed_out;
            exit.spawn_error = e.spawn_error;
            exit.user_cpu_ms = e.user_cpu_ms;
            exit.system_cpu_ms = e.system_cpu_ms;
            exit.max_rss_bytes = e.max_rss_bytes;
        }
        None => {
            crate::runner::kill_strays();
            let how = runner_status.map_or_else(|e| e.to_string(), |s| s.to_string());
            exit.spawn_error = Some(format!("the runner ended without reporting the command's end ({how})"));
        }
    }
    exit.killed = killed.load(Ordering::SeqCst);
    exit.duration_ms = started.elapsed().as_millis() as u64;
    replies.send(id, Event::Exit(exit));
}

fn spawn_failed(message: String) -> Event {
    Event::Exit(ExitInfo { exit_code: Some(127), spawn_error: Some(message), ..ExitInfo::default() })
}

fn lock(table: &Table) -> std::sync::MutexGuard<'_, std::collections::HashMap<u64, Running>> {
    table.lock().unwrap_or_else(|e| e.into_inner())
}

/// One frame from a runner's output, or `None` at its end.
pub(crate) fn read_frame(r: &mut impl Read) -> Option<(Frame, Vec<u8>)> {
    let mut header = [0u8; 5];
    r.read_exact(&mut header).ok()?;
    let len = u32::from_le_bytes([header[1], header[2], header[3], header[4]]) as usize;
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).ok()?;
    Some((Frame::from_tag(header[0])?, body))
}
