//! Checks on a [`SandboxSpec`] that the engine relies on. Front doors validate user input with
//! friendlier messages first; this is the last line, so a bad spec never half-builds a sandbox.

use std::path::{Component, Path};

use crate::error::JailError;
use crate::spec::{SandboxSpec, Workspace};

/// Sandbox paths that the engine owns and binds may not replace.
const RESERVED: &[&str] = &["/", "/proc", "/dev", "/etc", "/usr", "/tmp", "/workspace"];

fn invalid(field: &'static str, reason: impl Into<String>) -> JailError {
    JailError::InvalidSpec { field, reason: reason.into() }
}

/// A normalised absolute path: starts with `/`, no `.`/`..` components.
fn is_clean_absolute(p: &Path) -> bool {
    p.is_absolute() && p.components().all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
}

/// Validate everything the engine depends on.
pub fn spec(spec: &SandboxSpec) -> Result<(), JailError> {
    if spec.argv.first().is_none_or(|a| a.is_empty()) {
        return Err(invalid("argv", "the command is empty"));
    }
    if !is_clean_absolute(&spec.workdir) {
        return Err(invalid("workdir", format!("{} is not a clean absolute path", spec.workdir.display())));
    }
    if spec.identity.uid == 0 || spec.identity.gid == 0 {
        return Err(invalid("identity", "the sandbox user must not map to host root"));
    }
    if spec.hostname.is_empty() || spec.hostname.len() > 64 {
        return Err(invalid("hostname", "must be 1 to 64 bytes"));
    }
    if let Workspace::Host { path } = &spec.workspace {
        if !is_clean_absolute(path) || !path.is_dir() {
            return Err(invalid(
                "workspace",
                format!("{} is not an existing absolute directory", path.display()),
            ));
        }
    }
    for bind in &spec.binds {
        if !is_clean_absolute(&bind.source) || !bind.source.exists() {
            return Err(invalid(
                "binds",
                format!("source {} is not an existing absolute path", bind.source.display()),
            ));
        }
        if !is_clean_absolute(&bind.destination) {
            return Err(invalid(
                "binds",
                format!("destination {} is not a clean absolute path", bind.destination.display()),
            ));
        }
        let reserved = RESERVED.iter().any(|r| Path::new(r) == bind.destination)
            || bind.destination.starts_with("/proc")
            || bind.destination.starts_with("/dev");
        if reserved {
            return Err(invalid(
                "binds",
                format!("destination {} is managed by the sandbox", bind.destination.display()),
            ));
        }
    }
    Ok(())
}
