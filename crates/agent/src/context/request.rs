//! A run's request as a kernel reads it, and the runs a kernel cannot take.

use serde_json::{json, Value};

use crate::protocol::{CodeMode, Language, RunCodeRequest};

/// Why a context of `language` cannot run `request`, if it cannot.
pub(super) fn check(language: Language, request: &RunCodeRequest) -> Result<(), String> {
    match (language, request.mode) {
        (Language::Bash, CodeMode::Handler) => {
            Err("handler mode is for python and javascript contexts, not bash".to_owned())
        }
        (Language::Bash | Language::Javascript, CodeMode::Script) => {
            Err("script mode is for python contexts".to_owned())
        }
        (Language::Bash, _) if request.code.contains('\0') => {
            Err("bash code cannot contain a NUL character".to_owned())
        }
        _ => Ok(()),
    }
}

/// A run's request as a kernel of `language` reads it.
pub(super) fn request_line(language: Language, request: &RunCodeRequest, count: u64) -> Vec<u8> {
    match language {
        Language::Bash => {
            let mut bytes = request.code.clone().into_bytes();
            bytes.push(0);
            bytes
        }
        Language::Python | Language::Javascript => {
            let env: serde_json::Map<String, Value> =
                request.env.iter().map(|(k, v)| (k.clone(), Value::from(v.as_str()))).collect();
            let mut bytes = serde_json::to_vec(&json!({
                "code": request.code,
                "mode": request.mode,
                "execution_count": count,
                "event": request.event,
                "stdin": request.stdin,
                "env": env,
                "filename": request.filename,
            }))
            .unwrap_or_default();
            bytes.push(b'\n');
            bytes
        }
    }
}
