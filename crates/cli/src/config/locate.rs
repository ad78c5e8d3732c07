//! Which configuration file to load.
//!
//! The search order is the one capsule-run documents, with Airlock's names:
//!
//! 1. `--config PATH`: must exist;
//! 2. `$AIRLOCK_CONFIG`: must exist when set and non-empty;
//! 3. `~/.config/airlock/config.toml`, when `HOME` is an absolute path;
//! 4. `/etc/airlock/config.toml` ([`SYSTEM_CONFIG`]).
//!
//! The functions here are pure apart from looking at the file system: the caller reads the
//! environment and passes the values in.

use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};

use super::error::{ConfigError, ConfigOrigin};

/// The system-wide configuration file.
pub const SYSTEM_CONFIG: &str = "/etc/airlock/config.toml";

/// The environment variable naming a configuration file (read by the caller).
pub const CONFIG_ENV: &str = "AIRLOCK_CONFIG";

/// The per-user configuration file below the home directory.
pub const USER_CONFIG: &str = ".config/airlock/config.toml";

/// Find the configuration file: `explicit` (`--config`), then `env` (the value of
/// `$AIRLOCK_CONFIG`), then `~/.config/airlock/config.toml` below `home`, then
/// [`SYSTEM_CONFIG`]. `Ok(None)` when there is none and the built-in defaults apply.
///
/// An explicit path or a non-empty `$AIRLOCK_CONFIG` that does not exist is an error (E1001);
/// the per-user and system files are simply skipped when absent.
pub fn locate(
    explicit: Option<&Path>,
    env: Option<&OsStr>,
    home: Option<&Path>,
) -> Result<Option<PathBuf>, ConfigError> {
    locate_in(explicit, env, home, Path::new(SYSTEM_CONFIG))
}

/// [`locate`] with the system-wide file at `system` instead of [`SYSTEM_CONFIG`].
pub fn locate_in(
    explicit: Option<&Path>,
    env: Option<&OsStr>,
    home: Option<&Path>,
    system: &Path,
) -> Result<Option<PathBuf>, ConfigError> {
    if let Some(path) = explicit {
        return required(path, ConfigOrigin::Flag);
    }
    if let Some(value) = env.filter(|v| !v.is_empty()) {
        return required(Path::new(value), ConfigOrigin::Env);
    }
    // A relative or empty HOME would make the search depend on the working directory.
    if let Some(home) = home.filter(|h| h.is_absolute()) {
        let user = home.join(USER_CONFIG);
        if present(&user) {
            return Ok(Some(user));
        }
    }
    if present(system) {
        return Ok(Some(system.to_path_buf()));
    }
    Ok(None)
}

/// `path` if it exists (or cannot be checked: loading it will say why), else E1001.
fn required(path: &Path, origin: ConfigOrigin) -> Result<Option<PathBuf>, ConfigError> {
    match path.metadata() {
        Err(e) if is_absent(&e) => Err(ConfigError::NotFound { path: path.to_path_buf(), origin }),
        _ => Ok(Some(path.to_path_buf())),
    }
}

/// Whether a searched location holds something. Present but unreadable counts as present, so
/// that loading reports the problem instead of silently falling back to another file.
fn present(path: &Path) -> bool {
    match path.metadata() {
        Ok(_) => true,
        Err(e) => !is_absent(&e),
    }
}

fn is_absent(e: &io::Error) -> bool {
    // ENOTDIR: a component of the path is a file, e.g. ~/.config is not a directory.
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_util::TempDir;
    use std::fs;

    struct Layout {
        _dir: TempDir,
        home: PathBuf,
        user: PathBuf,
        system: PathBuf,
        explicit: PathBuf,
        env: PathBuf,
    }

    fn layout() -> Layout {
        let dir = TempDir::new("locate");
        let home = dir.path().join("home");
        let user = home.join(".config/airlock/config.toml");
        let system = dir.path().join("etc/airlock/config.toml");
        let explicit = dir.path().join("explicit.toml");
        let env = dir.path().join("env.toml");
        fs::create_dir_all(&home).unwrap();
        Layout { _dir: dir, home, user, system, explicit, env }
    }

    fn touch(path: &Path) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, "").unwrap();
    }

    #[test]
    fn nothing_found_means_builtin_defaults() {
        let l = layout();
        let found = locate_in(None, None, Some(&l.home), &l.system).unwrap();
        assert_eq!(found, None);
        assert_eq!(locate_in(None, None, None, &l.system).unwrap(), None);
    }

    #[test]
    fn search_order() {
        let l = layout();
        touch(&l.system);
        let found = |explicit: Option<&Path>, env: Option<&OsStr>| {
            locate_in(explicit, env, Some(&l.home), &l.system).unwrap()
        };
        assert_eq!(found(None, None), Some(l.system.clone()));
        touch(&l.user);
        assert_eq!(found(None, None), Some(l.user.clone()));
        touch(&l.env);
        assert_eq!(found(None, Some(l.env.as_os_str())), Some(l.env.clone()));
        touch(&l.explicit);
        assert_eq!(found(Some(&l.explicit), Some(l.env.as_os_str())), Some(l.explicit.clone()));
        // An empty AIRLOCK_CONFIG counts as unset.
        assert_eq!(found(None, Some(OsStr::new(""))), Some(l.user.clone()));
    }

    #[test]
    fn missing_explicit_file_is_an_error() {
        let l = layout();
        touch(&l.user);
        let e = locate_in(Some(&l.explicit), None, Some(&l.home), &l.system).unwrap_err();
        assert_eq!(e.code(), "E1001");
        assert_eq!(e.to_string(), format!("configuration file {} not found", l.explicit.display()));
    }

    #[test]
    fn missing_env_file_is_an_error() {
        let l = layout();
        touch(&l.user);
        let e = locate_in(None, Some(l.env.as_os_str()), Some(&l.home), &l.system).unwrap_err();
        assert_eq!(e.code(), "E1001");
        assert!(e.to_string().contains("AIRLOCK_CONFIG"), "{e}");
    }

    #[test]
    fn relative_home_is_ignored() {
        let l = layout();
        let found = locate_in(None, None, Some(Path::new("")), &l.system).unwrap();
        assert_eq!(found, None);
        let found = locate_in(None, None, Some(Path::new("rel")), &l.system).unwrap();
        assert_eq!(found, None);
    }

    #[test]
    fn home_config_that_is_not_a_directory_is_skipped() {
        let l = layout();
        // ~/.config is a file: the user file cannot exist, the system one is used.
        fs::write(l.home.join(".config"), "").unwrap();
        touch(&l.system);
        let found = locate_in(None, None, Some(&l.home), &l.system).unwrap();
        assert_eq!(found, Some(l.system.clone()));
    }

    #[test]
    fn default_system_path() {
        assert_eq!(SYSTEM_CONFIG, "/etc/airlock/config.toml");
    }
}
