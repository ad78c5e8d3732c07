//! The agent's request loop: requests arrive on standard input (a socket to the runtime), and
//! every answer goes back on the same socket, one line each. Each command runs on a thread of its
//! own through a runner process, so a slow command never holds up a ping or another command.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsFd;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::protocol::{Event, ExecRequest, ExecResult, Op, Request, Response};
use crate::runner::{Frame, RunnerExit};

/// Serve requests on standard input until the runtime closes it. `runner` is the program and
/// leading arguments that start a runner (the airlock binary and its hidden `agent-run`
/// subcommand).
pub fn serve(runner: Vec<OsString>) -> std::io::Result<()> {
    // Processes of the sandbox run as the agent's uid; not dumpable, they cannot open its
    // descriptors (the control socket) through /proc.
    nix::sys::prctl::set_dumpable(false).map_err(std::io::Error::from)?;
    let control = std::fs::File::from(std::io::stdin().as_fd().try_clone_to_owned()?);
    let replies = Arc::new(Mutex::new(control.try_clone()?));
    let runner = Arc::new(runner);
    for line in BufReader::new(control).lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let request: Request = match serde_json::from_str(&line) {
            Ok(r) => r,
            Err(e) => {
                let id = serde_json::from_str::<serde_json::Value>(&line)
                    .ok()
                    .and_then(|v| v.get("id").and_then(serde_json::Value::as_u64))
                    .unwrap_or(0);
                reply(
                    &replies,
                    &Response { id, event: Event::Error { message: format!("bad request: {e}") } },
                );
                continue;
            }
        };
        match request.op {
            Op::Ping => reply(&replies, &Response { id: request.id, event: Event::Pong }),
            Op::Exec(exec) => {
                let (replies, runner) = (Arc::clone(&replies), Arc::clone(&runner));
                std::thread::spawn(move || {
                    let event = Event::Exit(run_command(&runner, &exec));
                    reply(&replies, &Response { id: request.id, event });
                });
            }
        }
    }
    Ok(())
}

fn reply(replies: &Mutex<std::fs::File>, response: &Response) {
    let mut line = serde_json::to_vec(response).unwrap_or_default();
    line.push(b'\n');
    let mut out = replies.lock().unwrap_or_else(|e| e.into_inner());
    let _ = out.write_all(&line);
}

/// Run one command through a runner and collect its output, at most `max_output_bytes` of it.
fn run_command(runner: &[OsString], exec: &ExecRequest) -> ExecResult {
    let started = Instant::now();
    let mut result = ExecResult {
        exit_code: None,
        signal: None,
        timed_out: false,
        stdout: String::new(),
        stderr: String::new(),
        output_truncated: false,
        duration_ms: 0,
        spawn_error: None,
    };
    let Some((program, lead)) = runner.split_first() else {
        result.spawn_error = Some("no runner configured".to_owned());
        return result;
    };
    let mut command = Command::new(program);
    command.args(lead).arg("--cwd").arg(&exec.cwd);
    if let Some(ms) = exec.timeout_ms {
        command.arg("--timeout-ms").arg(ms.to_string());
    }
    command.arg("--").args(&exec.argv).envs(exec.env.iter().map(|(k, v)| (k, v)));
    command.stdin(if exec.stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    command.stdout(Stdio::piped()).stderr(Stdio::inherit());
    let mut child = match command.spawn() {
        Ok(c) => c,
        Err(e) => {
            result.spawn_error = Some(format!("cannot start the runner: {e}"));
            return result;
        }
    };
    if let (Some(mut stdin), Some(data)) = (child.stdin.take(), exec.stdin.clone()) {
        // Fed from a thread: a command that does not read must not block the collection.
        std::thread::spawn(move || stdin.write_all(data.as_bytes()));
    }
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut kept = 0u64;
    let mut exit: Option<RunnerExit> = None;
    if let Some(mut frames) = child.stdout.take() {
        while let Some((frame, body)) = read_frame(&mut frames) {
            match frame {
                Frame::Exit => exit = serde_json::from_slice(&body).ok(),
                Frame::Stdout | Frame::Stderr => {
                    let room = exec.max_output_bytes.saturating_sub(kept).min(body.len() as u64) as usize;
                    result.output_truncated |= room < body.len();
                    kept += room as u64;
                    let buf = if frame == Frame::Stdout { &mut out } else { &mut err };
                    buf.extend_from_slice(&body[..room]);
                }
            }
        }
    }
    let _ = child.wait();
    match exit {
        Some(e) => {
            result.exit_code = e.exit_code;
            result.signal = e.signal;
            result.timed_out = e.timed_out;
            result.spawn_error = e.spawn_error;
        }
        None => result.spawn_error = Some("the runner ended without reporting the command's end".to_owned()),
    }
    result.stdout = String::from_utf8_lossy(&out).into_owned();
    result.stderr = String::from_utf8_lossy(&err).into_owned();
    result.duration_ms = started.elapsed().as_millis() as u64;
    result
}

fn read_frame(r: &mut impl Read) -> Option<(Frame, Vec<u8>)> {
    let mut header = [0u8; 5];
    r.read_exact(&mut header).ok()?;
    let len = u32::from_le_bytes([header[1], header[2], header[3], header[4]]) as usize;
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).ok()?;
    Some((Frame::from_tag(header[0])?, body))
}
