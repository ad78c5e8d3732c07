//! Airlock's configuration file: locating it, loading it, validating it and layering
//! `[defaults]` and `[profiles.NAME]` over the built-in defaults.
//!
//! The format is capsule-run's (`[defaults]`, `[defaults.resources]`,
//! `[defaults.isolation]`, `[profiles.NAME]`, `[platform.linux]`, `[security]`), with
//! Airlock's additional keys; capsule-run's `[monitoring]`, `[platform.macos]` and
//! `[platform.windows]` tables are accepted and ignored. Errors carry capsule-run's codes
//! E1001 to E1004 ([`ConfigError::code`]).
//!
//! Typical use:
//!
//! ```ignore
//! let path = config::locate(flag.as_deref(), env::var_os(config::CONFIG_ENV).as_deref(),
//!                           env::var_os("HOME").as_deref().map(Path::new))?;
//! let file = match path { Some(p) => config::load(&p)?, None => Config::default() };
//! let settings = file.resolve(profile.as_deref())?;
//! let memory = match flags.memory {
//!     Some(text) => Some(Field::MemoryBytes.parse_flag("--memory", &text)?),
//!     None => settings.memory_bytes,
//! };
//! ```
#![forbid(unsafe_code)]

mod bind;
mod builtin;
mod error;
pub mod executor;
mod limits;
pub mod locate;
pub mod quantity;
pub mod resolve;
pub mod sandbox_runtime;
pub mod schema;
pub mod server;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::OnceLock;

pub use bind::{parse_bind, BindSpec};
pub use error::{ConfigError, ConfigOrigin};
pub use limits::Field;
pub use locate::{locate, CONFIG_ENV};
pub use resolve::Resolved;
pub use schema::{CgroupsVersion, Config, LandlockMode};
pub use server::{LogFormat, ServerSettings};

/// Largest configuration file read, so that `--config /dev/zero` fails instead of filling
/// memory.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// The built-in configuration: a commented TOML document with every default of Airlock.
/// It is the bottom layer of [`Config::resolve`] and what `--create-config FILE` writes.
pub fn embedded_default() -> &'static str {
    include_str!("default.toml")
}

/// Read, parse and validate the configuration file at `path`. Every section is checked,
/// including profiles that are not used: a syntax or schema error is E1001 with line and
/// column, a bad value E1002 or E1003 wrapped in [`ConfigError::InFile`].
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let read_error = |source: io::Error| {
        if source.kind() == io::ErrorKind::NotFound {
            ConfigError::NotFound { path: path.to_path_buf(), origin: ConfigOrigin::Other }
        } else {
            ConfigError::Read { path: path.to_path_buf(), source }
        }
    };
    let file = File::open(path).map_err(read_error)?;
    let mut text = String::new();
    file.take(MAX_CONFIG_BYTES + 1).read_to_string(&mut text).map_err(read_error)?;
    if text.len() as u64 > MAX_CONFIG_BYTES {
        return Err(read_error(io::Error::new(io::ErrorKind::InvalidData, "larger than 1 MiB")));
    }
    Config::from_toml(&text, path)
}

/// Write [`embedded_default`] to `path` for `--create-config FILE`, refusing to overwrite
/// anything that exists there (a dangling symbolic link included).
pub fn create_config(path: &Path) -> Result<(), ConfigError> {
    let write_error = |source: io::Error| ConfigError::Write { path: path.to_path_buf(), source };
    let mut file = OpenOptions::new().write(true).create_new(true).open(path).map_err(|e| {
        if e.kind() == io::ErrorKind::AlreadyExists {
            ConfigError::AlreadyExists { path: path.to_path_buf() }
        } else {
            write_error(e)
        }
    })?;
    if let Err(e) = file.write_all(embedded_default().as_bytes()).and_then(|()| file.sync_all()) {
        drop(file);
        // Do not leave a truncated file behind that a later run would load.
        let _ = fs::remove_file(path);
        return Err(write_error(e));
    }
    Ok(())
}

impl Config {
    /// Parse and validate configuration text; `path` names it in errors.
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| parse_error(path, text, &e))?;
        config
            .validate()
            .map_err(|e| ConfigError::InFile { path: path.to_path_buf(), error: Box::new(e) })?;
        Ok(config)
    }

    /// The built-in defaults: what [`embedded_default`] says, built once.
    pub fn builtin() -> &'static Config {
        static BUILTIN: OnceLock<Config> = OnceLock::new();
        BUILTIN.get_or_init(builtin::config)
    }
}

/// E1001 from a TOML error, with the 1-based line and column of the start of its span.
fn parse_error(path: &Path, text: &str, e: &toml::de::Error) -> ConfigError {
    let (line, column) = match e.span() {
        Some(span) => {
            let (l, c) = line_column(text, span.start);
            (Some(l), Some(c))
        }
        None => (None, None),
    };
    ConfigError::Parse { path: path.to_path_buf(), line, column, message: clean_message(e.message()) }
}

/// 1-based line and column (in characters) of byte `offset` of `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// The parser's message on one line, without a trailing period.
fn clean_message(message: &str) -> String {
    let joined = message.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("; ");
    joined.trim_end_matches('.').to_owned()
}

#[cfg(test)]
pub(crate) mod test_util {
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A directory under the system temporary directory, removed on drop.
    pub(crate) struct TempDir(PathBuf);

    impl TempDir {
        pub(crate) fn new(tag: &str) -> TempDir {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            let path =
                std::env::temp_dir().join(format!("airlock-test-{tag}-{}-{n}-{nanos}", std::process::id()));
            std::fs::create_dir(&path).expect("create temporary directory");
            TempDir(path)
        }

        pub(crate) fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

#[cfg(test)]
mod tests;
