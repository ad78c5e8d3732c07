//! The built-in defaults as values. `default.toml` documents the same settings (it is what
//! `--create-config` writes) and a test checks that the two agree; building them here spares
//! every run the TOML parser.

use std::collections::BTreeMap;

use super::schema::{
    CgroupsVersion, Config, Defaults, Isolation, LandlockMode, LinuxPlatform, Platform, Quantity, Resources,
    Security,
};
use super::server::{LogFormat, ServerSection};

fn size(text: &str) -> Option<Quantity> {
    Some(Quantity::Text(text.to_owned()))
}

/// The configuration `default.toml` describes.
pub(super) fn config() -> Config {
    Config {
        defaults: Defaults {
            timeout_ms: Some(30_000),
            environment: BTreeMap::new(),
            resources: Resources {
                memory_bytes: size("256M"),
                max_output_bytes: size("1M"),
                max_pids: Some(128),
                max_file_bytes: size("64M"),
                max_open_files: Some(256),
                tmp_size_bytes: size("64M"),
                workspace_size_bytes: size("256M"),
                ..Resources::default()
            },
            isolation: Isolation {
                network: Some(false),
                working_directory: Some("/workspace".into()),
                ..Isolation::default()
            },
        },
        platform: Platform {
            linux: LinuxPlatform {
                cgroups_version: Some(CgroupsVersion::Auto),
                enable_seccomp: Some(true),
                landlock: Some(LandlockMode::IfSupported),
            },
            ..Platform::default()
        },
        security: Security {
            max_concurrent_executions: Some(10),
            blocked_commands: Some(Vec::new()),
            allowed_commands: Some(Vec::new()),
        },
        server: ServerSection {
            address: Some("127.0.0.1".into()),
            port: Some(8080),
            pool_size: Some(2),
            default_ttl_seconds: Some(3600),
            max_ttl_seconds: Some(0),
            max_sandboxes: Some(500),
            max_concurrent_commands: Some(256),
            max_command_output_bytes: size("16M"),
            log_format: Some(LogFormat::Text),
            max_limits: Resources {
                memory_bytes: size("4G"),
                max_pids: Some(1024),
                max_open_files: Some(4096),
                tmp_size_bytes: size("1G"),
                ..Resources::default()
            },
            ..ServerSection::default()
        },
        ..Config::default()
    }
}
