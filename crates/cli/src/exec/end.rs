//! How a run ended (the stream's `end` event, or the fields of the collected answer) and the exit
//! status `airlock exec` gives it.

use serde::Deserialize;

/// The run ended well: status `ok`.
pub const EXIT_OK: i32 = 0;
/// The code raised an error (status `error`) and reported no exit code of its own.
pub const EXIT_ERROR: i32 = 1;
/// Nothing ran to an end: bad flags, a server that cannot be reached, refuses the request or
/// breaks off. 2 is what the argument parser exits with for usage errors too.
pub const EXIT_REQUEST_FAILED: i32 = 2;
/// The run's timeout stopped it (status `timeout`), as `timeout(1)` reports.
pub const EXIT_TIMEOUT: i32 = 124;
/// The interpreter ended during the run (`context_lost`) or could not run it (`failed`); 125 is
/// what `timeout(1)` and `env(1)` use for their own failures, and `airlock run` for a sandbox
/// that did not start.
pub const EXIT_RUN_FAILED: i32 = 125;
/// The run was interrupted (status `interrupted`), or Ctrl-C stopped the wait: 128 + SIGINT, as
/// shells report a process that SIGINT ended.
pub const EXIT_INTERRUPTED: i32 = 130;

/// The end of a run: the fields of the `end` event this client uses.
#[derive(Debug, Deserialize)]
pub struct RunEnd {
    /// `ok`, `error`, `interrupted`, `timeout`, `context_lost` or `failed`.
    pub status: String,
    /// Bash and scripts: the exit status.
    pub exit_code: Option<i32>,
    /// Why the context was restarted or lost (`CONTEXT_RESTARTED`, `CONTEXT_LOST`).
    pub code: Option<String>,
    /// Why, when the run did not end by itself.
    pub message: Option<String>,
    /// Whether output beyond the server's cap was dropped.
    #[serde(default)]
    pub output_truncated: bool,
}

impl RunEnd {
    /// The exit status: the run's own exit code when it has one (a one-shot script, or a Bash
    /// cell's last command, as `bash -c` would exit), else the status's.
    pub fn exit_status(&self) -> i32 {
        // A code the shell could not report as such (a negative one, or one above 255, which
        // would wrap) falls back to the status's own.
        let exit_code = self.exit_code.filter(|c| (0..=255).contains(c));
        match self.status.as_str() {
            "ok" => exit_code.unwrap_or(EXIT_OK),
            "error" => exit_code.filter(|&c| c != 0).unwrap_or(EXIT_ERROR),
            "timeout" => EXIT_TIMEOUT,
            "interrupted" => EXIT_INTERRUPTED,
            // `context_lost`, `failed`, and whatever a newer server adds.
            _ => EXIT_RUN_FAILED,
        }
    }

    /// The lines for stderr: why the run did not end by itself, and dropped output. An `error`
    /// with a message is a script a signal killed; an exception's traceback says enough.
    pub fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        let plain = matches!(self.status.as_str(), "ok" | "error");
        if !plain || self.message.is_some() {
            let mut line = format!("airlock exec: run ended: {}", self.status);
            if let Some(code) = &self.code {
                line += &format!(" ({code})");
            }
            if let Some(message) = &self.message {
                line += &format!(": {message}");
            }
            notes.push(line);
        }
        if self.output_truncated {
            notes.push("airlock exec: output beyond the server's limit was dropped".to_owned());
        }
        notes
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn end(value: serde_json::Value) -> RunEnd {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn statuses_map_to_exit_statuses() {
        let cases = [
            (json!({"status": "ok"}), EXIT_OK),
            (json!({"status": "ok", "exit_code": 0}), EXIT_OK),
            (json!({"status": "ok", "exit_code": 1}), 1),
            (json!({"status": "error", "exit_code": 3}), 3),
            (json!({"status": "error"}), EXIT_ERROR),
            (json!({"status": "error", "exit_code": 0}), EXIT_ERROR),
            (json!({"status": "error", "exit_code": -9}), EXIT_ERROR),
            (json!({"status": "timeout"}), EXIT_TIMEOUT),
            (json!({"status": "interrupted"}), EXIT_INTERRUPTED),
            (json!({"status": "context_lost", "code": "CONTEXT_LOST"}), EXIT_RUN_FAILED),
            (json!({"status": "failed"}), EXIT_RUN_FAILED),
            (json!({"status": "something_new"}), EXIT_RUN_FAILED),
        ];
        for (value, expected) in cases {
            assert_eq!(end(value.clone()).exit_status(), expected, "{value}");
        }
    }

    #[test]
    fn notes_name_status_code_and_message() {
        assert!(end(json!({"status": "ok"})).notes().is_empty());
        assert!(end(json!({"status": "error", "exit_code": 1})).notes().is_empty());
        let restarted = end(
            json!({"status": "timeout", "code": "CONTEXT_RESTARTED", "message": "it ignored its interrupt",
                                   "output_truncated": true}),
        );
        assert_eq!(
            restarted.notes(),
            [
                "airlock exec: run ended: timeout (CONTEXT_RESTARTED): it ignored its interrupt",
                "airlock exec: output beyond the server's limit was dropped"
            ]
        );
        assert_eq!(end(json!({"status": "interrupted"})).notes(), ["airlock exec: run ended: interrupted"]);
    }
}
