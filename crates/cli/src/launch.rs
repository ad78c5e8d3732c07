//! The internal commands behind long-lived sandboxes: `airlock launch` (run by the server, one
//! per sandbox) and `airlock agent` (the sandbox's agent, run by the engine inside it).
//!
//! The server cannot call the engine itself: it is multi-threaded, and a user namespace can only
//! be made from a single-threaded process. So it starts `airlock launch`, a single-threaded
//! supervisor, with one end of a socket pair on its stdin; the engine hands that socket to the
//! agent as the agent's stdin.

use std::io::Write;
use std::os::fd::AsFd;

use airlock_jail::{JailError, OutputSink, SandboxSpec, Stream};
use serde::Serialize;

use crate::error::EXIT_SETUP_FAILED;

/// The agent's own output: log lines for the server, passed on to the launcher's stderr.
struct ToStderr;

impl OutputSink for ToStderr {
    fn output(&mut self, _stream: Stream, data: &[u8]) {
        let _ = std::io::stderr().write_all(data);
    }
}

/// What `airlock launch` prints on stdout when the sandbox has ended.
#[derive(Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
enum LaunchReport {
    Ended { outcome: airlock_jail::Outcome },
    Failed { code: &'static str, message: String, hint: String },
}

/// `airlock launch --spec FILE`.
pub fn main(args: &crate::args::LaunchArgs) -> i32 {
    let report = match launch(&args.spec) {
        Ok(outcome) => LaunchReport::Ended { outcome },
        Err(e) => {
            let e = crate::error::RunError::from(e);
            LaunchReport::Failed { code: e.code(), message: e.to_string(), hint: e.hint() }
        }
    };
    let failed = matches!(report, LaunchReport::Failed { .. });
    let _ = writeln!(std::io::stdout(), "{}", serde_json::to_string(&report).unwrap_or_default());
    if failed {
        EXIT_SETUP_FAILED
    } else {
        0
    }
}

fn launch(spec_path: &std::path::Path) -> Result<airlock_jail::Outcome, JailError> {
    let invalid = |what: String| JailError::InvalidSpec { field: "spec", reason: what };
    let text =
        std::fs::read_to_string(spec_path).map_err(|e| invalid(format!("{}: {e}", spec_path.display())))?;
    let spec: SandboxSpec =
        serde_json::from_str(&text).map_err(|e| invalid(format!("{}: {e}", spec_path.display())))?;
    let control = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| invalid(format!("stdin is not a usable control socket: {e}")))?;
    airlock_jail::run_attached(&spec, control, &mut ToStderr)
}

/// `airlock agent`: serve the runtime until it hangs up.
pub fn agent() -> i32 {
    let runner = match std::env::current_exe() {
        Ok(exe) => vec![exe.into_os_string(), "agent-run".into()],
        Err(e) => {
            eprintln!("airlock agent: cannot find its own executable: {e}");
            return 1;
        }
    };
    match airlock_agent::serve(runner) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("airlock agent: {e}");
            1
        }
    }
}
