//! The events of a streamed run and how each is shown: output through to our stdout and stderr
//! as it arrives, the run's value on stdout, errors and notes about other values on stderr.

use std::io::Write;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::end::RunEnd;
use super::sse::SseEvent;

/// One event of a run.
#[derive(Debug)]
pub enum RunEvent {
    /// Text the code wrote to stdout.
    Stdout(String),
    /// Text the code wrote to stderr.
    Stderr(String),
    /// A value the code produced.
    Result(RunValue),
    /// The error the code raised.
    Error(RunError),
    /// The run's end; the last event.
    End(RunEnd),
}

#[derive(Debug, Deserialize)]
struct Output {
    data: String,
}

/// A `result` event.
#[derive(Debug, Deserialize)]
pub struct RunValue {
    /// The run's own value (the last expression's, the handler's) rather than one it displayed.
    main: bool,
    /// The value by MIME type.
    data: Map<String, Value>,
}

/// An `error` event.
#[derive(Debug, Deserialize)]
pub struct RunError {
    name: String,
    value: String,
    #[serde(default)]
    traceback: Vec<String>,
}

impl RunEvent {
    /// The event, or `None` for a kind this client does not know (a newer server's), which is
    /// skipped.
    pub fn parse(event: &SseEvent) -> Result<Option<RunEvent>, serde_json::Error> {
        let data = &event.data;
        Ok(Some(match event.name.as_str() {
            "stdout" => RunEvent::Stdout(serde_json::from_str::<Output>(data)?.data),
            "stderr" => RunEvent::Stderr(serde_json::from_str::<Output>(data)?.data),
            "result" => RunEvent::Result(serde_json::from_str(data)?),
            "error" => RunEvent::Error(serde_json::from_str(data)?),
            "end" => RunEvent::End(serde_json::from_str(data)?),
            _ => return Ok(None),
        }))
    }
}

/// Where an event goes.
#[derive(Debug, PartialEq, Eq)]
pub enum Shown {
    /// To stdout.
    Stdout(String),
    /// To stderr.
    Stderr(String),
}

/// How an event is shown; `handler` runs print their main value as JSON. The end is not shown
/// here: its notes come with the exit status.
pub fn render(event: &RunEvent, handler: bool) -> Option<Shown> {
    match event {
        RunEvent::Stdout(text) => Some(Shown::Stdout(text.clone())),
        RunEvent::Stderr(text) => Some(Shown::Stderr(text.clone())),
        RunEvent::Result(value) => Some(render_value(value, handler)),
        RunEvent::Error(error) => Some(Shown::Stderr(render_error(error))),
        RunEvent::End(_) => None,
    }
}

/// Write what `render` chose. A closed stdout or stderr must not stop the reading: the run goes
/// on to its end, and its exit status still counts.
pub fn show(shown: Shown) {
    let _ = match shown {
        Shown::Stdout(text) => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush())
        }
        Shown::Stderr(text) => std::io::stderr().lock().write_all(text.as_bytes()),
    };
}

fn render_value(value: &RunValue, handler: bool) -> Shown {
    let text = value.data.get("text/plain").and_then(Value::as_str);
    if value.main {
        if let Some(json) = value.data.get("application/json").filter(|_| handler) {
            return Shown::Stdout(format!("{json}\n"));
        }
        if let Some(text) = text {
            return Shown::Stdout(format!("{text}\n"));
        }
    }
    // A displayed value: a figure or HTML cannot be shown on a terminal, so say what came.
    let rich = value
        .data
        .keys()
        .find(|k| k.starts_with("image/"))
        .or_else(|| value.data.keys().find(|k| *k != "text/plain"));
    match (rich, text) {
        (Some(kind), _) => Shown::Stderr(note(kind, &value.data[kind])),
        (None, Some(text)) => Shown::Stdout(format!("{text}\n")),
        (None, None) => Shown::Stderr("[a result with no representation]\n".to_owned()),
    }
}

/// `[image/png result, 12345 bytes of base64]`.
fn note(kind: &str, value: &Value) -> String {
    match value {
        Value::String(s) if kind.starts_with("image/") && !kind.starts_with("image/svg") => {
            format!("[{kind} result, {} bytes of base64]\n", s.len())
        }
        Value::String(s) => format!("[{kind} result, {} bytes]\n", s.len()),
        other => format!("[{kind} result, {} bytes of JSON]\n", other.to_string().len()),
    }
}

/// The traceback as the language prints it; entries end with a newline in Python and without
/// one in JavaScript.
fn render_error(error: &RunError) -> String {
    if error.traceback.is_empty() {
        return match error.value.as_str() {
            "" => format!("{}\n", error.name),
            value => format!("{}: {value}\n", error.name),
        };
    }
    let mut text = String::new();
    for line in &error.traceback {
        text += line;
        if !line.ends_with('\n') {
            text.push('\n');
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{render, RunEvent, Shown};
    use crate::exec::sse::SseEvent;

    fn event(name: &str, data: serde_json::Value) -> RunEvent {
        RunEvent::parse(&SseEvent { name: name.to_owned(), data: data.to_string() }).unwrap().unwrap()
    }

    fn shown(name: &str, data: serde_json::Value, handler: bool) -> Shown {
        render(&event(name, data), handler).unwrap()
    }

    #[test]
    fn output_goes_through_and_values_get_a_newline() {
        assert_eq!(shown("stdout", json!({"data": "a\n"}), false), Shown::Stdout("a\n".into()));
        assert_eq!(shown("stderr", json!({"data": "b"}), false), Shown::Stderr("b".into()));
        let value = json!({"main": true, "data": {"text/plain": "42", "text/html": "<b>42</b>"}});
        assert_eq!(shown("result", value, false), Shown::Stdout("42\n".into()));
        let printed = json!({"main": false, "data": {"text/plain": "'shown'"}});
        assert_eq!(shown("result", printed, false), Shown::Stdout("'shown'\n".into()));
    }

    #[test]
    fn handler_values_print_as_json() {
        let value = json!({"main": true, "data": {"text/plain": "{'a': 1}", "application/json": {"a": 1}}});
        assert_eq!(shown("result", value.clone(), true), Shown::Stdout("{\"a\":1}\n".into()));
        assert_eq!(shown("result", value, false), Shown::Stdout("{'a': 1}\n".into()));
    }

    #[test]
    fn figures_become_a_note_on_stderr() {
        let figure = json!({"main": false, "data": {"text/plain": "<Figure>", "image/png": "iVBORw0KGgo="}});
        assert_eq!(
            shown("result", figure, false),
            Shown::Stderr("[image/png result, 12 bytes of base64]\n".into())
        );
        let html = json!({"main": false, "data": {"text/plain": "T", "text/html": "<table/>"}});
        assert_eq!(shown("result", html, false), Shown::Stderr("[text/html result, 8 bytes]\n".into()));
        let main_figure = json!({"main": true, "data": {"text/plain": "<Figure>", "image/png": "AAAA"}});
        assert_eq!(shown("result", main_figure, false), Shown::Stdout("<Figure>\n".into()));
    }

    #[test]
    fn errors_show_their_traceback_or_name_and_value() {
        let python = json!({"name": "ZeroDivisionError", "value": "division by zero",
                            "traceback": ["Traceback (most recent call last):\n", "ZeroDivisionError: division by zero\n"]});
        assert_eq!(
            shown("error", python, false),
            Shown::Stderr("Traceback (most recent call last):\nZeroDivisionError: division by zero\n".into())
        );
        let js = json!({"name": "Error", "value": "no", "traceback": ["Error: no", "    at f (x.js:1:1)"]});
        assert_eq!(shown("error", js, false), Shown::Stderr("Error: no\n    at f (x.js:1:1)\n".into()));
        let bare = json!({"name": "KeyboardInterrupt", "value": "", "traceback": []});
        assert_eq!(shown("error", bare, false), Shown::Stderr("KeyboardInterrupt\n".into()));
        let valued = json!({"name": "ValueError", "value": "bad", "traceback": []});
        assert_eq!(shown("error", valued, false), Shown::Stderr("ValueError: bad\n".into()));
    }

    #[test]
    fn unknown_events_are_skipped_and_malformed_ones_refused() {
        let unknown = SseEvent { name: "progress".into(), data: "{}".into() };
        assert!(RunEvent::parse(&unknown).unwrap().is_none());
        let malformed = SseEvent { name: "stdout".into(), data: "{\"data\": 1}".into() };
        assert!(RunEvent::parse(&malformed).is_err());
    }
}
