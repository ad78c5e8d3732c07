//! The event stream of execd's `/command`, `/session/{id}/run` and `/code`: Server-Sent Events
//! whose data is one JSON object with a `type` (`init`, `stdout`, `stderr`, `result`,
//! `execution_count`, `execution_complete`, `error`) and a `timestamp` in Unix milliseconds,
//! as the OpenSandbox SDKs parse it. Commands' output goes one line per event, without its
//! line terminator, as execd sends it.

use std::convert::Infallible;

use airlock_runtime::now_ms;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::{Stream, StreamExt};
use serde::Serialize;
use serde_json::{Map, Value};

/// One event of a stream.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(super) struct StreamEvent {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    execution_count: Option<u64>,
    /// Milliseconds the run took.
    #[serde(skip_serializing_if = "Option::is_none")]
    execution_time: Option<u64>,
    timestamp: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    results: Option<Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ErrorPart>,
}

/// An error as execd reports it, Jupyter's names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct ErrorPart {
    ename: String,
    evalue: String,
    traceback: Vec<String>,
}

impl StreamEvent {
    fn new(kind: &'static str) -> StreamEvent {
        StreamEvent {
            kind,
            text: None,
            execution_count: None,
            execution_time: None,
            timestamp: now_ms(),
            results: None,
            error: None,
        }
    }

    /// The first event: the id of the command, or of the context the code runs in, which is
    /// what an interrupt names.
    pub(super) fn init(id: &str) -> StreamEvent {
        StreamEvent { text: Some(id.to_owned()), ..StreamEvent::new("init") }
    }

    /// Output on stdout.
    pub(super) fn stdout(text: String) -> StreamEvent {
        StreamEvent { text: Some(text), ..StreamEvent::new("stdout") }
    }

    /// Output on stderr.
    pub(super) fn stderr(text: String) -> StreamEvent {
        StreamEvent { text: Some(text), ..StreamEvent::new("stderr") }
    }

    /// A value by MIME type; execd names `text/plain` `text`.
    pub(super) fn result(mut data: Map<String, Value>) -> StreamEvent {
        if let Some(text) = data.remove("text/plain") {
            data.insert("text".to_owned(), text);
        }
        StreamEvent { results: Some(data), ..StreamEvent::new("result") }
    }

    /// The run's number in its context.
    pub(super) fn execution_count(count: u64) -> StreamEvent {
        StreamEvent { execution_count: Some(count), ..StreamEvent::new("execution_count") }
    }

    /// A successful end, after `millis` milliseconds.
    pub(super) fn complete(millis: u64) -> StreamEvent {
        StreamEvent { execution_time: Some(millis), ..StreamEvent::new("execution_complete") }
    }

    /// An error: for code, the exception; for a command, `CommandExecError` with the exit
    /// status as `evalue` (the SDKs read the exit code from it).
    pub(super) fn error(ename: &str, evalue: String, traceback: Vec<String>) -> StreamEvent {
        let error = ErrorPart { ename: ename.to_owned(), evalue, traceback };
        StreamEvent { error: Some(error), ..StreamEvent::new("error") }
    }
}

/// The answer that streams `events`.
pub(super) fn respond(events: impl Stream<Item = StreamEvent> + Send + 'static) -> Response {
    let frames = events.map(|event| {
        let data = serde_json::to_string(&event).unwrap_or_default();
        Ok::<_, Infallible>(Event::default().data(data))
    });
    Sse::new(frames).keep_alive(KeepAlive::default()).into_response()
}

/// Cuts one output stream into lines as execd reports them: each line without its `\n`,
/// `\r` or `\r\n`, and an empty line as `"\n"`; a last line without a terminator comes with
/// [`Lines::finish`].
#[derive(Debug, Default)]
pub(super) struct Lines {
    pending: String,
    last_was_cr: bool,
}

impl Lines {
    /// The lines that `chunk` completes.
    pub(super) fn push(&mut self, chunk: &str) -> Vec<String> {
        let mut lines = Vec::new();
        for c in chunk.chars() {
            if c == '\n' || c == '\r' {
                if !self.pending.is_empty() {
                    lines.push(std::mem::take(&mut self.pending));
                } else if !(c == '\n' && self.last_was_cr) {
                    lines.push("\n".to_owned());
                }
                self.last_was_cr = c == '\r';
            } else {
                self.last_was_cr = false;
                self.pending.push(c);
            }
        }
        lines
    }

    /// The unterminated last line, if any.
    pub(super) fn finish(&mut self) -> Option<String> {
        (!self.pending.is_empty()).then(|| std::mem::take(&mut self.pending))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn lines_lose_their_terminators_and_empty_ones_are_newlines() {
        let mut lines = Lines::default();
        assert_eq!(lines.push("a\nb"), ["a"]);
        assert_eq!(lines.push("c\r\n\nd\r"), ["bc", "\n", "d"]);
        assert_eq!(lines.push("\ne"), Vec::<String>::new());
        assert_eq!(lines.finish().as_deref(), Some("e"));
        assert_eq!(lines.finish(), None);
    }

    #[test]
    fn events_have_the_sdk_field_names() {
        let event = serde_json::to_value(StreamEvent::init("cmd_1")).unwrap();
        assert_eq!(event["type"], "init");
        assert_eq!(event["text"], "cmd_1");
        assert!(event["timestamp"].as_i64().unwrap() > 0);
        assert!(event.get("error").is_none());
        let error = serde_json::to_value(StreamEvent::error("E", "3".into(), vec!["t".into()])).unwrap();
        assert_eq!(error["error"], json!({"ename": "E", "evalue": "3", "traceback": ["t"]}));
        let mut data = Map::new();
        data.insert("text/plain".into(), json!("4"));
        data.insert("text/html".into(), json!("<b>4</b>"));
        let result = serde_json::to_value(StreamEvent::result(data)).unwrap();
        assert_eq!(result["results"], json!({"text": "4", "text/html": "<b>4</b>"}));
        let done = serde_json::to_value(StreamEvent::complete(12)).unwrap();
        assert_eq!(
            (done["type"].as_str(), done["execution_time"].as_u64()),
            (Some("execution_complete"), Some(12))
        );
    }
}
