//! The Sandbox Executor front door's settings, from the environment variables that executor
//! reads: `CONTROL_PLANE_URL`, `INTERNAL_API_TOKEN`, `MAX_CONCURRENT_EXECUTIONS`,
//! `MAX_MEMORY_MB`, `MAX_EXECUTION_TIME`, `WORKSPACE_PATH`, and Airlock's
//! `EXECUTOR_HEARTBEAT_SECONDS`. A bad value stops `airlock serve` with the variable's name.

use std::path::PathBuf;
use std::time::Duration;

use airlock_server::compat::executor::{BearerToken, HttpUrl, Settings};

use super::ConfigError;

/// Settings from the environment (`env` looks a variable up); unset or empty variables keep
/// the defaults of [`Settings::default`].
pub fn settings(env: &dyn Fn(&str) -> Option<String>) -> Result<Settings, ConfigError> {
    let var = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    let mut settings = Settings::default();
    if let Some(url) = var("CONTROL_PLANE_URL") {
        let parsed = HttpUrl::parse(url.trim()).map_err(|reason| {
            ConfigError::invalid_value("CONTROL_PLANE_URL", &url, &reason, "http://HOST[:PORT][/PATH]")
        })?;
        settings.control_plane = Some(parsed);
    }
    if let Some(token) = var("INTERNAL_API_TOKEN") {
        let parsed = BearerToken::new(&token).ok_or_else(|| {
            ConfigError::invalid_value(
                "INTERNAL_API_TOKEN",
                "(hidden)",
                "holds spaces or non-ASCII characters",
                "visible ASCII",
            )
        })?;
        settings.control_plane_token = Some(parsed);
    }
    if let Some(text) = var("MAX_CONCURRENT_EXECUTIONS") {
        settings.max_concurrent_executions =
            ConfigError::whole_number("MAX_CONCURRENT_EXECUTIONS", &text, 1..=10_000, None)? as usize;
    }
    if let Some(text) = var("MAX_MEMORY_MB") {
        settings.memory_bytes =
            Some(ConfigError::whole_number("MAX_MEMORY_MB", &text, 16..=1 << 20, None)? << 20);
    }
    if let Some(text) = var("MAX_EXECUTION_TIME") {
        settings.default_timeout = seconds("MAX_EXECUTION_TIME", &text, 1.0, 86_400.0)?;
    }
    if let Some(text) = var("EXECUTOR_HEARTBEAT_SECONDS") {
        settings.heartbeat_interval = seconds("EXECUTOR_HEARTBEAT_SECONDS", &text, 0.05, 3600.0)?;
    }
    if let Some(text) = var("WORKSPACE_PATH") {
        settings.workspace = Some(directory("WORKSPACE_PATH", &text)?);
    }
    Ok(settings)
}

fn seconds(field: &str, text: &str, min: f64, max: f64) -> Result<Duration, ConfigError> {
    match text.trim().parse::<f64>() {
        Ok(s) if (min..=max).contains(&s) => Ok(Duration::from_secs_f64(s)),
        _ => Err(ConfigError::invalid_value(
            field,
            text,
            "not a number of seconds in range",
            &format!("seconds from {min} to {max}"),
        )),
    }
}

/// The Sandbox Executor creates a missing workspace; here it is the source of every execution's
/// files, so a missing one is a mistake to report.
fn directory(field: &str, text: &str) -> Result<PathBuf, ConfigError> {
    let path = PathBuf::from(text.trim());
    if !path.is_absolute() {
        return Err(ConfigError::invalid_value(
            field,
            text,
            "not an absolute path",
            "an existing directory, e.g. /srv/workspace",
        ));
    }
    if !path.is_dir() {
        return Err(ConfigError::invalid_value(
            field,
            text,
            "no such directory",
            "an existing directory, e.g. /srv/workspace",
        ));
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn from(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let vars: HashMap<String, String> =
            vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        settings(&|name| vars.get(name).cloned())
    }

    #[test]
    fn nothing_set_is_the_default() {
        assert_eq!(from(&[]).unwrap(), Settings::default());
        assert_eq!(from(&[("CONTROL_PLANE_URL", " ")]).unwrap(), Settings::default());
    }

    #[test]
    fn every_variable_is_read() {
        let dir = std::env::temp_dir();
        let s = from(&[
            ("CONTROL_PLANE_URL", "http://control-plane:8000"),
            ("INTERNAL_API_TOKEN", "s3cret"),
            ("MAX_CONCURRENT_EXECUTIONS", "3"),
            ("MAX_MEMORY_MB", "512"),
            ("MAX_EXECUTION_TIME", "60"),
            ("EXECUTOR_HEARTBEAT_SECONDS", "0.5"),
            ("WORKSPACE_PATH", dir.to_str().unwrap()),
        ])
        .unwrap();
        assert_eq!(s.control_plane.unwrap().to_string(), "http://control-plane:8000");
        assert_eq!(s.control_plane_token.as_ref().map(BearerToken::expose), Some("s3cret"));
        assert!(!format!("{:?}", s.control_plane_token).contains("s3cret"), "the token is not logged");
        assert_eq!(s.max_concurrent_executions, 3);
        assert_eq!(s.memory_bytes, Some(512 << 20));
        assert_eq!(s.default_timeout, Duration::from_secs(60));
        assert_eq!(s.heartbeat_interval, Duration::from_millis(500));
        assert_eq!(s.workspace, Some(dir));
    }

    #[test]
    fn a_bad_value_names_its_variable() {
        for (name, value) in [
            ("CONTROL_PLANE_URL", "https://cp:8000"),
            ("CONTROL_PLANE_URL", "cp:8000"),
            ("INTERNAL_API_TOKEN", "two words"),
            ("MAX_CONCURRENT_EXECUTIONS", "0"),
            ("MAX_CONCURRENT_EXECUTIONS", "many"),
            ("MAX_MEMORY_MB", "8"),
            ("MAX_MEMORY_MB", "1.5"),
            ("MAX_EXECUTION_TIME", "0"),
            ("EXECUTOR_HEARTBEAT_SECONDS", "-1"),
            ("WORKSPACE_PATH", "relative/dir"),
            ("WORKSPACE_PATH", "/nonexistent-airlock-workspace"),
        ] {
            let error = from(&[(name, value)]).expect_err(value);
            assert!(error.to_string().contains(name), "{name}={value}: {error}");
        }
        let https = from(&[("CONTROL_PLANE_URL", "https://cp")]).unwrap_err().to_string();
        assert!(https.contains("https is not supported"), "{https}");
    }
}
