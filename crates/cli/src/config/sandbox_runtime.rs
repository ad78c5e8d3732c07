//! The Sandbox Runtime front door's `SANDBOX_*` environment variables, read by `airlock serve`
//! with the units that server documented (memory in KB, CPU in cores). A bad value stops the
//! server from starting, naming the variable. `SANDBOX_POOL_SIZE` is the server's pool size
//! (see [`super::server::ENV_OVERRIDES`]).

use std::time::Duration;

use airlock_server::compat::sandbox_runtime::Settings;

use super::limits::Field;
use super::ConfigError;

/// Longest run timeout and time to live, in seconds: a day, and a year.
const MAX_TIMEOUT_SECONDS: u64 = 86_400;
const MAX_TTL_SECONDS: u64 = 365 * 86_400;

/// The settings from `env`, a lookup of environment variables.
pub fn settings(env: &dyn Fn(&str) -> Option<String>) -> Result<Settings, ConfigError> {
    let mut settings = Settings::default();
    if let Some(value) = env("SANDBOX_TIMEOUT_SECONDS") {
        let seconds = ConfigError::whole_number(
            "SANDBOX_TIMEOUT_SECONDS",
            &value,
            1..=MAX_TIMEOUT_SECONDS,
            Some("seconds"),
        )?;
        settings.timeout = Duration::from_secs(seconds);
    }
    if let Some(value) = env("SANDBOX_MEMORY_LIMIT") {
        let range = Field::MemoryBytes.range();
        let (min, max) = (range.start() / 1024, range.end() / 1024);
        settings.memory_bytes =
            Some(ConfigError::whole_number("SANDBOX_MEMORY_LIMIT", &value, min..=max, Some("KB"))? * 1024);
    }
    if let Some(value) = env("SANDBOX_SESSION_TTL") {
        let seconds =
            ConfigError::whole_number("SANDBOX_SESSION_TTL", &value, 1..=MAX_TTL_SECONDS, Some("seconds"))?;
        settings.session_ttl = Some(Duration::from_secs(seconds));
    }
    if let Some(value) = env("SANDBOX_CPU_QUOTA") {
        settings.cpu_millis = Some(Field::Cpu.parse_flag("SANDBOX_CPU_QUOTA", &value)?);
    }
    if let Some(value) = env("SANDBOX_ALLOW_NETWORK") {
        settings.allow_network = match value.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => true,
            "false" | "0" | "no" | "off" => false,
            _ => {
                return Err(ConfigError::invalid_value(
                    "SANDBOX_ALLOW_NETWORK",
                    &value,
                    "not a boolean",
                    "true or false",
                ))
            }
        };
    }
    Ok(settings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        settings(&|name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
    }

    fn field_of(e: ConfigError) -> String {
        match e {
            ConfigError::InvalidValue { field, .. } | ConfigError::OutOfRange { field, .. } => field,
            other => panic!("not a bad value: {other}"),
        }
    }

    #[test]
    fn nothing_set_gives_the_defaults() {
        let s = from(&[]).unwrap();
        assert_eq!(s, Settings::default());
        assert_eq!(s.timeout, Duration::from_secs(300));
        assert!(!s.allow_network);
    }

    #[test]
    fn every_variable_takes_effect_in_its_units() {
        let s = from(&[
            ("SANDBOX_TIMEOUT_SECONDS", "600"),
            ("SANDBOX_MEMORY_LIMIT", "65536"),
            ("SANDBOX_SESSION_TTL", "3600"),
            ("SANDBOX_CPU_QUOTA", "0.5"),
            ("SANDBOX_ALLOW_NETWORK", "TRUE"),
        ])
        .unwrap();
        assert_eq!(s.timeout, Duration::from_secs(600));
        assert_eq!(s.memory_bytes, Some(64 << 20));
        assert_eq!(s.session_ttl, Some(Duration::from_secs(3600)));
        assert_eq!(s.cpu_millis, Some(500));
        assert!(s.allow_network);
        assert_eq!(from(&[("SANDBOX_CPU_QUOTA", "2")]).unwrap().cpu_millis, Some(2000));
        assert!(!from(&[("SANDBOX_ALLOW_NETWORK", "false")]).unwrap().allow_network);
    }

    #[test]
    fn a_bad_value_names_its_variable() {
        for (var, value) in [
            ("SANDBOX_TIMEOUT_SECONDS", "0"),
            ("SANDBOX_TIMEOUT_SECONDS", "soon"),
            ("SANDBOX_MEMORY_LIMIT", "128MB"),
            ("SANDBOX_MEMORY_LIMIT", "1024"),
            ("SANDBOX_SESSION_TTL", "-1"),
            ("SANDBOX_CPU_QUOTA", "lots"),
            ("SANDBOX_CPU_QUOTA", "0"),
            ("SANDBOX_ALLOW_NETWORK", "maybe"),
        ] {
            let e = from(&[(var, value)]).expect_err(value);
            assert_eq!(field_of(e), var, "{var}={value}");
        }
    }
}
