//! Human mode: the payload's output goes straight to the terminal as it arrives, and one summary
//! line goes to stderr at the end.

use std::io::Write;

use airlock_jail::{Outcome, OutputSink, Status, Stream};

use crate::error::RunError;

/// Writes kept output through to this process's stdout and stderr.
#[derive(Debug, Default)]
pub struct Passthrough;

impl OutputSink for Passthrough {
    fn output(&mut self, stream: Stream, data: &[u8]) {
        // A closed terminal must not end supervision: the sandbox still has to be reaped.
        let _ = match stream {
            Stream::Stdout => {
                std::io::stdout().lock().write_all(data).and_then(|()| std::io::stdout().flush())
            }
            Stream::Stderr => std::io::stderr().lock().write_all(data),
        };
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// The one-line summary of a run that started.
pub fn summary(o: &Outcome) -> String {
    let u = &o.usage;
    let how = match (o.status, o.exit_code, o.signal) {
        (Status::Ok | Status::Exited, Some(code), _) => format!("exited {code}"),
        (Status::Timeout, ..) => "timed out".to_string(),
        (Status::MemoryLimit, ..) => "killed: memory limit".to_string(),
        (Status::PidsLimit, ..) => "stopped: process limit".to_string(),
        (Status::CpuTimeLimit, ..) => "killed: cpu time limit".to_string(),
        (Status::FileSizeLimit, ..) => "killed: file size limit".to_string(),
        (Status::OutputLimit, code, _) => format!("output truncated, exited {}", code.unwrap_or(-1)),
        (_, _, Some(sig)) => format!("killed by signal {sig}"),
        _ => "ended".to_string(),
    };
    format!(
        "airlock: {how} in {} ms (cpu {} ms, peak {}, output {} B{})",
        u.wall.as_millis(),
        (u.user_cpu + u.system_cpu).as_millis(),
        mib(u.peak_memory_bytes),
        u.stdout_bytes + u.stderr_bytes,
        if u.output_truncated { ", truncated" } else { "" }
    )
}

/// The lines printed for a run that could not start.
pub fn error_lines(e: &RunError) -> String {
    format!("airlock: error {}: {}\n  hint: {}", e.code(), e, e.hint())
}
