//! Configuration errors and their capsule-run error codes (E1001 to E1004).

use std::io;
use std::path::PathBuf;

/// Where the name of a configuration file that turned out to be missing came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigOrigin {
    /// The `--config` flag.
    Flag,
    /// The `AIRLOCK_CONFIG` environment variable.
    Env,
    /// Anything else (a path handed to [`super::load`] directly, the search path).
    Other,
}

impl ConfigOrigin {
    fn suffix(self) -> &'static str {
        match self {
            ConfigOrigin::Env => " (from AIRLOCK_CONFIG)",
            ConfigOrigin::Flag | ConfigOrigin::Other => "",
        }
    }

    fn name(self) -> &'static str {
        match self {
            ConfigOrigin::Flag => "--config",
            ConfigOrigin::Env => "AIRLOCK_CONFIG",
            ConfigOrigin::Other => "path",
        }
    }
}

/// Why a configuration could not be located, read, parsed, validated or resolved.
///
/// Every variant maps to a capsule-run code through [`ConfigError::code`]; messages are
/// lowercase, name the offending input and have no trailing period.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A configuration file that was asked for explicitly does not exist (E1001).
    #[error("configuration file {}{} not found", path.display(), origin.suffix())]
    NotFound {
        /// The missing file.
        path: PathBuf,
        /// Who named it.
        origin: ConfigOrigin,
    },
    /// The file exists but cannot be read (E1001).
    #[error("cannot read configuration file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The file is not valid TOML, or does not fit the schema: unknown field, wrong type,
    /// unknown enum value (E1001).
    #[error("invalid configuration file {}{}: {message}", path.display(), position(*line, *column))]
    Parse {
        /// The file (or a placeholder for text that did not come from a file).
        path: PathBuf,
        /// 1-based line of the error, when the parser reported a position.
        line: Option<usize>,
        /// 1-based column (in characters) of the error, when the parser reported a position.
        column: Option<usize>,
        /// The parser's message.
        message: String,
    },
    /// A required part of a value is missing, e.g. the destination of a bind mount (E1002).
    #[error("{context} is missing required {field}")]
    MissingField {
        /// The missing part (`"destination"`).
        field: &'static str,
        /// The value it is missing from (`"bind mount '/host/data'"`).
        context: String,
        /// What a complete value looks like.
        expected: &'static str,
    },
    /// A number outside its allowed range (E1003).
    #[error("{field} value '{value}' is out of range: allowed {allowed}")]
    OutOfRange {
        /// The setting: a dotted configuration path or a flag.
        field: String,
        /// The value as written.
        value: String,
        /// Smallest allowed value.
        min: u64,
        /// Largest allowed value.
        max: u64,
        /// The range in words, with units.
        allowed: String,
    },
    /// A value that cannot be parsed or is not allowed: an unparsable size, a relative path,
    /// a bad bind mount mode (E1003).
    #[error("invalid {field} '{value}': {reason}")]
    InvalidValue {
        /// The setting: a dotted configuration path, a flag or a kind of value.
        field: String,
        /// The value as written.
        value: String,
        /// What is wrong with it.
        reason: String,
        /// What a valid value looks like.
        expected: String,
    },
    /// `--profile NAME` names a profile the configuration does not define (E1004).
    #[error("unknown profile '{name}' ({})", available_list(available))]
    UnknownProfile {
        /// The requested profile.
        name: String,
        /// The profiles that exist, sorted.
        available: Vec<String>,
    },
    /// `--create-config FILE` would overwrite an existing file (E1001).
    #[error("configuration file {} already exists", path.display())]
    AlreadyExists {
        /// The existing file.
        path: PathBuf,
    },
    /// `--create-config FILE` could not write the file (E1001).
    #[error("cannot write configuration file {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A validation error found in a configuration file; the code, hint and details are
    /// those of the inner error.
    #[error("configuration file {}: {error}", path.display())]
    InFile {
        /// The file.
        path: PathBuf,
        /// What is wrong in it.
        error: Box<ConfigError>,
    },
}

fn position(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!(" at line {l}, column {c}"),
        (Some(l), None) => format!(" at line {l}"),
        _ => String::new(),
    }
}

fn available_list(available: &[String]) -> String {
    if available.is_empty() {
        "no profiles are defined".to_owned()
    } else {
        format!("available: {}", available.join(", "))
    }
}

impl ConfigError {
    /// An [`ConfigError::InvalidValue`] of `field`.
    pub fn invalid_value(field: &str, value: &str, reason: &str, expected: &str) -> ConfigError {
        ConfigError::InvalidValue {
            field: field.to_owned(),
            value: value.to_owned(),
            reason: reason.to_owned(),
            expected: expected.to_owned(),
        }
    }

    /// The whole number `text` of `field` (an environment variable, say) within `range`;
    /// `unit` names what it counts in the message, when it is not bare.
    pub fn whole_number(
        field: &str,
        text: &str,
        range: std::ops::RangeInclusive<u64>,
        unit: Option<&str>,
    ) -> Result<u64, ConfigError> {
        let (min, max) = (range.start(), range.end());
        let expected = match unit {
            Some(unit) => format!("a whole number of {unit} from {min} to {max}"),
            None => format!("a whole number from {min} to {max}"),
        };
        match text.trim().parse::<u64>() {
            Ok(n) if range.contains(&n) => Ok(n),
            Ok(_) => Err(ConfigError::invalid_value(field, text, "out of range", &expected)),
            Err(_) => Err(ConfigError::invalid_value(field, text, "not a whole number", &expected)),
        }
    }

    /// The capsule-run error code: `E1001` invalid file, `E1002` missing required field,
    /// `E1003` value out of range or invalid, `E1004` unknown profile.
    pub fn code(&self) -> &'static str {
        match self {
            ConfigError::NotFound { .. }
            | ConfigError::Read { .. }
            | ConfigError::Parse { .. }
            | ConfigError::AlreadyExists { .. }
            | ConfigError::Write { .. } => "E1001",
            ConfigError::MissingField { .. } => "E1002",
            ConfigError::OutOfRange { .. } | ConfigError::InvalidValue { .. } => "E1003",
            ConfigError::UnknownProfile { .. } => "E1004",
            ConfigError::InFile { error, .. } => error.code(),
        }
    }

    #[cfg(test)]
    /// The error without its file context: the inner error of [`ConfigError::InFile`],
    /// `self` otherwise.
    pub fn root(&self) -> &ConfigError {
        match self {
            ConfigError::InFile { error, .. } => error.root(),
            other => other,
        }
    }

    /// What the user can do about it, in one sentence.
    pub fn hint(&self) -> String {
        match self {
            ConfigError::NotFound { origin, .. } => match origin {
                ConfigOrigin::Flag => "check the path given to --config, or write a starting \
                                       configuration there with --create-config"
                    .to_owned(),
                ConfigOrigin::Env => "point AIRLOCK_CONFIG at an existing file or unset it".to_owned(),
                ConfigOrigin::Other => "check that the file exists".to_owned(),
            },
            ConfigError::Read { .. } => {
                "check that the file is a regular file readable by the current user".to_owned()
            }
            ConfigError::Parse { line, .. } => {
                let at = match line {
                    Some(l) => format!(" on line {l}"),
                    None => String::new(),
                };
                format!(
                    "fix the TOML{at}; `--create-config FILE` writes a commented example with \
                     every supported key"
                )
            }
            ConfigError::MissingField { field, expected, .. } => {
                format!("add the {field}: expected {expected}")
            }
            ConfigError::OutOfRange { allowed, .. } => format!("use a value in {allowed}"),
            ConfigError::InvalidValue { expected, .. } => format!("expected {expected}"),
            ConfigError::UnknownProfile { available, .. } => {
                if available.is_empty() {
                    "define [profiles.NAME] in the configuration file or drop --profile".to_owned()
                } else {
                    format!("use one of: {}", available.join(", "))
                }
            }
            ConfigError::AlreadyExists { .. } => {
                "choose another path or move the existing file away first".to_owned()
            }
            ConfigError::Write { .. } => "check that the directory exists and is writable".to_owned(),
            ConfigError::InFile { error, .. } => error.hint(),
        }
    }

    /// Machine-readable details as key/value pairs, for the JSON error object.
    pub fn details(&self) -> Vec<(&'static str, String)> {
        let path = |p: &PathBuf| ("path", p.display().to_string());
        match self {
            ConfigError::NotFound { path: p, origin } => {
                vec![path(p), ("origin", origin.name().to_owned())]
            }
            ConfigError::Read { path: p, source } | ConfigError::Write { path: p, source } => {
                vec![path(p), ("error", source.to_string())]
            }
            ConfigError::Parse { path: p, line, column, message } => {
                let mut d = vec![path(p)];
                if let Some(l) = line {
                    d.push(("line", l.to_string()));
                }
                if let Some(c) = column {
                    d.push(("column", c.to_string()));
                }
                d.push(("message", message.clone()));
                d
            }
            ConfigError::MissingField { field, context, .. } => {
                vec![("field", (*field).to_owned()), ("context", context.clone())]
            }
            ConfigError::OutOfRange { field, value, min, max, allowed } => vec![
                ("field", field.clone()),
                ("value", value.clone()),
                ("min", min.to_string()),
                ("max", max.to_string()),
                ("allowed", allowed.clone()),
            ],
            ConfigError::InvalidValue { field, value, reason, .. } => {
                vec![("field", field.clone()), ("value", value.clone()), ("reason", reason.clone())]
            }
            ConfigError::UnknownProfile { name, available } => {
                vec![("profile", name.clone()), ("available", available.join(","))]
            }
            ConfigError::AlreadyExists { path: p } => vec![path(p)],
            ConfigError::InFile { path: p, error } => {
                let mut d = vec![path(p)];
                d.extend(error.details());
                d
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_messages() {
        let e = ConfigError::NotFound { path: "/x/c.toml".into(), origin: ConfigOrigin::Flag };
        assert_eq!(e.to_string(), "configuration file /x/c.toml not found");
        assert_eq!(e.code(), "E1001");
        let e = ConfigError::NotFound { path: "/x/c.toml".into(), origin: ConfigOrigin::Env };
        assert_eq!(e.to_string(), "configuration file /x/c.toml (from AIRLOCK_CONFIG) not found");
        assert!(e.hint().contains("AIRLOCK_CONFIG"));
    }

    #[test]
    fn unknown_profile_lists_available() {
        let e = ConfigError::UnknownProfile {
            name: "production".into(),
            available: vec!["ci".into(), "dev".into()],
        };
        assert_eq!(e.to_string(), "unknown profile 'production' (available: ci, dev)");
        assert_eq!(e.code(), "E1004");
        assert_eq!(e.hint(), "use one of: ci, dev");
        let e = ConfigError::UnknownProfile { name: "x".into(), available: vec![] };
        assert_eq!(e.to_string(), "unknown profile 'x' (no profiles are defined)");
    }

    #[test]
    fn in_file_delegates() {
        let inner = ConfigError::OutOfRange {
            field: "defaults.timeout_ms".into(),
            value: "0".into(),
            min: 1,
            max: 2,
            allowed: "1..=2 ms".into(),
        };
        let e = ConfigError::InFile { path: "/c.toml".into(), error: Box::new(inner) };
        assert_eq!(e.code(), "E1003");
        assert_eq!(e.hint(), "use a value in 1..=2 ms");
        assert!(matches!(e.root(), ConfigError::OutOfRange { .. }));
        assert_eq!(
            e.to_string(),
            "configuration file /c.toml: defaults.timeout_ms value '0' is out of range: \
             allowed 1..=2 ms"
        );
        assert_eq!(e.details()[0], ("path", "/c.toml".to_owned()));
    }

    #[test]
    fn messages_are_lowercase_without_trailing_period() {
        let errors = [
            ConfigError::AlreadyExists { path: "/a".into() },
            ConfigError::MissingField {
                field: "destination",
                context: "bind mount '/a'".into(),
                expected: "SOURCE:DESTINATION",
            },
            ConfigError::Parse {
                path: "/a".into(),
                line: Some(3),
                column: Some(9),
                message: "expected `=`".into(),
            },
        ];
        for e in errors {
            let msg = e.to_string();
            assert!(!msg.ends_with('.'), "{msg}");
            assert!(msg.starts_with(|c: char| !c.is_uppercase()), "{msg}");
        }
    }
}
