//! Bind mounts written `SOURCE:DESTINATION[:ro|rw]`, shared by `bind_mounts` in the
//! configuration file and the `--bind` flag, and the path checks of the other path settings.

use std::path::{Component, Path, PathBuf};

use super::error::ConfigError;

/// What a bind mount looks like, for errors and hints.
pub const BIND_SYNTAX: &str = "SOURCE:DESTINATION[:ro|rw] with absolute paths, e.g. /host/data:/data:ro";

/// One bind mount of a host path into the sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindSpec {
    /// Absolute host path.
    pub source: PathBuf,
    /// Absolute path inside the sandbox.
    pub destination: PathBuf,
    /// Read-only (the default, `ro`) or read-write (`rw`).
    pub readonly: bool,
}

/// Parse `SOURCE:DESTINATION[:ro|rw]` (read-only when the mode is left out).
///
/// Both paths must be absolute; the destination must not be `/` or contain `..`. Paths cannot
/// contain `:`. A missing source or destination is E1002, anything else wrong is E1003.
pub fn parse_bind(s: &str) -> Result<BindSpec, ConfigError> {
    parse_bind_named("bind mount", s)
}

/// [`parse_bind`], naming the value `what` in errors (e.g. `defaults.isolation.bind_mounts
/// entry`).
pub(crate) fn parse_bind_named(what: &str, s: &str) -> Result<BindSpec, ConfigError> {
    let invalid = |reason: String| ConfigError::InvalidValue {
        field: what.to_owned(),
        value: s.to_owned(),
        reason,
        expected: BIND_SYNTAX.to_owned(),
    };
    let missing = |field: &'static str| ConfigError::MissingField {
        field,
        context: format!("{what} '{s}'"),
        expected: BIND_SYNTAX,
    };
    let parts: Vec<&str> = s.split(':').collect();
    let (source, destination, mode) = match parts.as_slice() {
        [source] => (*source, "", None),
        [source, destination] => (*source, *destination, None),
        [source, destination, mode] => (*source, *destination, Some(*mode)),
        _ => return Err(invalid("too many ':'-separated parts (paths cannot contain ':')".to_owned())),
    };
    if source.is_empty() {
        return Err(missing("source"));
    }
    if destination.is_empty() {
        return Err(missing("destination"));
    }
    let readonly = match mode {
        None | Some("ro") => true,
        Some("rw") => false,
        Some(other) => return Err(invalid(format!("unknown mode '{other}' (use ro or rw)"))),
    };
    host_path_problem(Path::new(source))
        .map_or(Ok(()), |p| Err(invalid(format!("source '{source}' {p}"))))?;
    sandbox_path_problem(Path::new(destination), false)
        .map_or(Ok(()), |p| Err(invalid(format!("destination '{destination}' {p}"))))?;
    Ok(BindSpec { source: PathBuf::from(source), destination: PathBuf::from(destination), readonly })
}

/// What is wrong with a host path, if anything: it must be absolute and free of NUL bytes.
pub(crate) fn host_path_problem(path: &Path) -> Option<&'static str> {
    if path.as_os_str().as_encoded_bytes().contains(&0) {
        Some("must not contain a NUL byte")
    } else if !path.is_absolute() {
        Some("must be an absolute path")
    } else {
        None
    }
}

/// What is wrong with a path inside the sandbox, if anything: absolute, no NUL, no `..`, and
/// unless `root_ok`, not `/` itself (nothing can be mounted over the sandbox root).
pub(crate) fn sandbox_path_problem(path: &Path, root_ok: bool) -> Option<&'static str> {
    if let Some(p) = host_path_problem(path) {
        return Some(p);
    }
    if path.components().any(|c| c == Component::ParentDir) {
        return Some("must not contain '..'");
    }
    if !root_ok && path.components().all(|c| c == Component::RootDir) {
        return Some("must not be the sandbox root '/'");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bind(src: &str, dst: &str, readonly: bool) -> BindSpec {
        BindSpec { source: src.into(), destination: dst.into(), readonly }
    }

    #[test]
    fn valid_binds() {
        let table = [
            ("/host/data:/data", bind("/host/data", "/data", true)),
            ("/host/data:/data:ro", bind("/host/data", "/data", true)),
            ("/host/out:/out:rw", bind("/host/out", "/out", false)),
            ("/a/../b:/x/y", bind("/a/../b", "/x/y", true)),
            ("/:/host", bind("/", "/host", true)),
        ];
        for (input, want) in table {
            assert_eq!(parse_bind(input).unwrap(), want, "{input}");
        }
    }

    #[test]
    fn invalid_binds() {
        let table: &[(&str, &str, &str)] = &[
            ("relative/path:/x", "E1003", "source 'relative/path' must be an absolute path"),
            ("/a:/b:rx", "E1003", "unknown mode 'rx' (use ro or rw)"),
            ("/a:/b:", "E1003", "unknown mode ''"),
            ("/a:/b:RO", "E1003", "unknown mode 'RO'"),
            ("/a:relative", "E1003", "destination 'relative' must be an absolute path"),
            ("/a:/x/../etc", "E1003", "must not contain '..'"),
            ("/a:/", "E1003", "must not be the sandbox root"),
            ("/a:/b:ro:x", "E1003", "too many"),
            ("/host/data", "E1002", "is missing required destination"),
            ("/host/data:", "E1002", "is missing required destination"),
            (":/x", "E1002", "is missing required source"),
            ("", "E1002", "is missing required source"),
            ("/a\0:/b", "E1003", "NUL"),
        ];
        for (input, code, want) in table {
            let e = parse_bind(input).expect_err(input);
            assert_eq!(e.code(), *code, "{input}: {e}");
            assert!(e.to_string().contains(want), "{input}: {e}");
            assert!(e.to_string().contains(&format!("'{input}'")), "{input}: {e}");
            assert!(e.hint().contains("SOURCE:DESTINATION"), "{}", e.hint());
        }
        let e = parse_bind("/a:/b:rx").unwrap_err();
        assert_eq!(e.to_string(), "invalid bind mount '/a:/b:rx': unknown mode 'rx' (use ro or rw)");
        let e = parse_bind("/host/data").unwrap_err();
        assert_eq!(e.to_string(), "bind mount '/host/data' is missing required destination");
    }
}
