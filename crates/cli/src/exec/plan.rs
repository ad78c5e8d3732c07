//! `airlock exec`'s flags, checked and turned into one request before anything is sent: the
//! code and the input read, the language picked, the body built.

use std::io::{IsTerminal, Read};
use std::path::Path;

use serde_json::{json, Map, Value};

use super::client::Client;
use super::error::ExecError;
use crate::args::{ExecArgs, ExecLanguage};

/// A request ready to send.
#[derive(Debug)]
pub struct Plan {
    /// The server.
    pub client: Client,
    /// Where the run is posted.
    pub path: String,
    /// The request body, `stream` included.
    pub body: Value,
    /// Handler mode: the main value is the handler's return value, shown as JSON.
    pub handler: bool,
    /// Print the collected answer instead of streaming.
    pub json: bool,
    /// Where to post an interrupt of the run's context; one-shot runs have none.
    pub interrupt: Option<String>,
}

/// Check the flags, read the code and the input, and build the request.
pub fn resolve(args: ExecArgs) -> Result<Plan, ExecError> {
    let client = Client::new(&args.server, args.api_key.as_deref())?;
    check_combinations(&args)?;
    for (flag, id) in [("--sandbox", &args.sandbox), ("--context", &args.context)] {
        if let Some(id) = id {
            check_id(flag, id)?;
        }
    }
    let timeout_ms = args.timeout.as_deref().map(timeout_ms).transpose()?;
    let event = args.event.as_deref().map(event).transpose()?;
    let language =
        args.language.or_else(|| args.file.as_deref().and_then(language_of)).unwrap_or(ExecLanguage::Python);
    let code = read_code(&args)?;
    let stdin = match &args.input {
        Some(path) => Some(read_text("the input", path)?),
        None => None,
    };

    let mut body = Map::new();
    body.insert("code".into(), json!(code));
    if !args.json {
        body.insert("stream".into(), json!(true));
    }
    if let Some(ms) = timeout_ms {
        body.insert("timeout_ms".into(), json!(ms));
    }
    let handler = event.is_some();
    if let Some(event) = event {
        body.insert("event".into(), event);
    }
    let (path, interrupt) = match &args.sandbox {
        Some(sandbox) => {
            // A named context has its own language; the server takes one or the other.
            let context = match &args.context {
                Some(context) => {
                    body.insert("context".into(), json!(context));
                    context.clone()
                }
                None => {
                    body.insert("language".into(), json!(language_name(language)));
                    language_name(language).to_owned()
                }
            };
            (
                format!("/v1/sandboxes/{sandbox}/code"),
                Some(format!("/v1/sandboxes/{sandbox}/contexts/{context}/interrupt")),
            )
        }
        None => {
            body.insert("language".into(), json!(language_name(language)));
            if let Some(stdin) = stdin {
                body.insert("stdin".into(), json!(stdin));
            }
            ("/v1/run".to_owned(), None)
        }
    };
    Ok(Plan { client, path, body: Value::Object(body), handler, json: args.json, interrupt })
}

fn check_combinations(args: &ExecArgs) -> Result<(), ExecError> {
    if args.code.is_some() && args.file.is_some() {
        return Err(ExecError::invalid(
            "both -c/--code and FILE are given",
            "give the code one way: `-c CODE`, a FILE, or `-` for standard input",
        ));
    }
    if args.sandbox.is_some() && args.input.is_some() {
        return Err(ExecError::invalid(
            "--input cannot be used with --sandbox: code in a context has no standard input",
            "drop --sandbox to run the code once in a fresh sandbox with this input, or read the data in the code",
        ));
    }
    if args.context.is_some() && args.sandbox.is_none() {
        return Err(ExecError::invalid(
            "--context needs --sandbox: a one-shot run has no contexts",
            "add --sandbox ID, or drop --context",
        ));
    }
    if args.context.is_some() && args.language.is_some() {
        return Err(ExecError::invalid(
            "--language cannot be used with --context: a context has its own language",
            "drop --language, or drop --context to use the language's default context",
        ));
    }
    let code_from_stdin = args.code.is_none() && args.file.as_deref().is_none_or(|f| f == Path::new("-"));
    if code_from_stdin && args.input.as_deref() == Some(Path::new("-")) {
        return Err(ExecError::invalid(
            "--input - and the code both read standard input",
            "give the code as a FILE or with -c, or the input as a file",
        ));
    }
    Ok(())
}

/// Ids go into request paths as they are, so they must need no escaping.
fn check_id(flag: &str, id: &str) -> Result<(), ExecError> {
    let fine = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    if id.is_empty() || !id.chars().all(fine) || id.chars().all(|c| c == '.') {
        return Err(ExecError::invalid(
            format!("{flag} '{id}' is not an id"),
            "ids hold only letters, digits, `_`, `-` and `.`, e.g. the `id` that creating a sandbox answers",
        ));
    }
    Ok(())
}

fn timeout_ms(text: &str) -> Result<u64, ExecError> {
    let hint = "write a duration with its unit, e.g. 500ms, 30s, 2m, 1h";
    let duration = humantime::parse_duration(text)
        .map_err(|e| ExecError::invalid(format!("--timeout '{text}' is not a duration: {e}"), hint))?;
    match u64::try_from(duration.as_millis()) {
        Ok(0) => Err(ExecError::invalid(format!("--timeout '{text}' is below 1ms"), hint)),
        Ok(ms) => Ok(ms),
        Err(_) => Err(ExecError::invalid(format!("--timeout '{text}' is too long"), hint)),
    }
}

fn event(text: &str) -> Result<Value, ExecError> {
    serde_json::from_str(text).map_err(|e| {
        ExecError::invalid(
            format!("--event is not JSON: {e}"),
            "quote the event for the shell, e.g. --event '{\"x\": 1}'; use '{}' for none",
        )
    })
}

/// The language a file's extension names.
fn language_of(file: &Path) -> Option<ExecLanguage> {
    match file.extension()?.to_str()? {
        "py" => Some(ExecLanguage::Python),
        "js" | "cjs" | "mjs" => Some(ExecLanguage::Javascript),
        "sh" | "bash" => Some(ExecLanguage::Bash),
        _ => None,
    }
}

/// The language's name in the API, which is also its default context's id.
fn language_name(language: ExecLanguage) -> &'static str {
    match language {
        ExecLanguage::Python => "python",
        ExecLanguage::Javascript => "javascript",
        ExecLanguage::Bash => "bash",
    }
}

fn read_code(args: &ExecArgs) -> Result<String, ExecError> {
    if let Some(code) = &args.code {
        return Ok(code.clone());
    }
    match args.file.as_deref() {
        Some(file) if file != Path::new("-") => read_text("the code", file),
        explicit => {
            // Without FILE, a terminal on stdin means nobody is about to pipe code in.
            if explicit.is_none() && std::io::stdin().is_terminal() {
                return Err(ExecError::invalid(
                    "no code to run",
                    "give a FILE, `-c CODE`, or pipe the code in: echo 'print(1)' | airlock exec",
                ));
            }
            read_text("the code", Path::new("-"))
        }
    }
}

/// A file's text, or standard input's for `-`.
fn read_text(what: &'static str, path: &Path) -> Result<String, ExecError> {
    let (name, result) = if path == Path::new("-") {
        let mut text = String::new();
        ("standard input".to_owned(), std::io::stdin().read_to_string(&mut text).map(|_| text))
    } else {
        (format!("'{}'", path.display()), std::fs::read_to_string(path))
    };
    result.map_err(|source| ExecError::Read { what, path: name, source })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn extensions_pick_the_language() {
        let cases = [
            ("a.py", Some(ExecLanguage::Python)),
            ("dir/a.mjs", Some(ExecLanguage::Javascript)),
            ("a.cjs", Some(ExecLanguage::Javascript)),
            ("a.js", Some(ExecLanguage::Javascript)),
            ("a.sh", Some(ExecLanguage::Bash)),
            ("a.bash", Some(ExecLanguage::Bash)),
            ("a.txt", None),
            ("Makefile", None),
        ];
        for (file, language) in cases {
            assert_eq!(language_of(Path::new(file)), language, "{file}");
        }
    }

    #[test]
    fn timeouts_are_durations_of_at_least_a_millisecond() {
        assert_eq!(timeout_ms("300ms").unwrap(), 300);
        assert_eq!(timeout_ms("2m").unwrap(), 120_000);
        assert_eq!(timeout_ms("1s 500ms").unwrap(), 1500);
        for bad in ["30", "soon", "0s", "10us"] {
            let e = timeout_ms(bad).unwrap_err();
            assert!(e.to_string().contains(&format!("'{bad}'")), "the message names the value: {e}");
        }
    }

    #[test]
    fn ids_need_no_escaping() {
        assert!(check_id("--sandbox", "sb_0a1B-2.c").is_ok());
        for bad in ["", "a/b", "..", "a b", "a?b", "é"] {
            assert!(check_id("--sandbox", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn events_are_json() {
        assert_eq!(event("{\"x\": [1]}").unwrap(), json!({"x": [1]}));
        assert!(event("{x: 1}").unwrap_err().to_string().starts_with("--event is not JSON"));
    }
}
