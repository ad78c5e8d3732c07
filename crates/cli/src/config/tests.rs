//! Tests of loading, validation and layering as a whole.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use super::resolve::ResolvedPlatform;
use super::test_util::TempDir;
use super::*;

const MIB: u64 = 1024 * 1024;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml(text, Path::new("/etc/airlock/config.toml"))
}

fn resolve(text: &str, profile: Option<&str>) -> Result<Resolved, ConfigError> {
    parse(text)?.resolve(profile)
}

#[test]
fn embedded_default_parses_and_resolves_to_the_builtin_values() {
    let config = parse(embedded_default()).unwrap();
    let r = config.resolve(None).unwrap();
    assert_eq!(r.profile, None);
    assert_eq!(r.timeout_ms, Some(30_000));
    assert!(r.env.is_empty());
    assert_eq!(r.memory_bytes, Some(256 * MIB));
    assert_eq!(r.cpu_millis, None);
    assert_eq!(r.cpu_shares, None);
    assert_eq!(r.max_output_bytes, Some(MIB));
    assert_eq!(r.max_pids, Some(128));
    assert_eq!(r.max_cpu_time_ms, None);
    assert_eq!(r.max_file_bytes, Some(64 * MIB));
    assert_eq!(r.max_open_files, Some(256));
    assert_eq!(r.tmp_size_bytes, Some(64 * MIB));
    assert_eq!(r.workspace_size_bytes, Some(256 * MIB));
    assert_eq!(r.network, Some(false));
    assert_eq!(r.working_directory, Some(PathBuf::from("/workspace")));
    assert_eq!(r.workspace, None);
    assert!(r.readonly_paths.is_empty() && r.writable_paths.is_empty());
    assert!(r.bind_mounts.is_empty());
    assert_eq!(r.platform, ResolvedPlatform::default());
    assert_eq!(r.platform.cgroups_version, CgroupsVersion::Auto);
    assert!(r.platform.enable_seccomp);
    assert_eq!(r.platform.landlock, LandlockMode::IfSupported);
    assert_eq!(r.security.max_concurrent_executions, 10);
    assert!(r.security.blocked_commands.is_empty());
    assert!(r.security.allowed_commands.is_empty());

    // No file at all gives the same settings.
    assert_eq!(Config::default().resolve(None).unwrap(), r);
    assert_eq!(Config::builtin().resolve(None).unwrap(), r);
}

#[test]
fn built_in_defaults_are_what_the_embedded_file_says() {
    let parsed = Config::from_toml(embedded_default(), Path::new("<built-in defaults>")).unwrap();
    assert_eq!(Config::builtin(), &parsed);
}

#[test]
fn embedded_default_commented_examples_are_valid() {
    // Uncommenting every example line must give a valid file too.
    let uncommented: String = embedded_default()
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest) if rest.starts_with('[') || rest.contains(" = ") => rest,
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let config = parse(&uncommented).unwrap();
    let r = config.resolve(Some("big")).unwrap();
    assert_eq!(r.memory_bytes, Some(2048 * MIB));
    assert_eq!(r.cpu_millis, Some(2000));
    assert_eq!(r.workspace, Some(PathBuf::from("/home/me/project")));
    assert_eq!(r.bind_mounts.len(), 2);
    assert_eq!(r.env["LANG"], "C.UTF-8");
}

#[test]
fn syntax_error_reports_line_and_column() {
    let text = "[defaults]\ntimeout_ms = 1000\nmemory_bytes = = 5\n";
    let e = parse(text).unwrap_err();
    assert_eq!(e.code(), "E1001");
    let ConfigError::Parse { path, line, column, message } = &e else {
        panic!("expected a parse error, got {e:?}");
    };
    assert_eq!(path, Path::new("/etc/airlock/config.toml"));
    assert_eq!(*line, Some(3));
    assert_eq!(*column, Some(16));
    assert!(!message.is_empty() && !message.ends_with('.'));
    let msg = e.to_string();
    assert!(
        msg.starts_with("invalid configuration file /etc/airlock/config.toml at line 3, column 16: "),
        "{msg}"
    );
    assert!(!msg.contains('\n'), "{msg}");
    let details = e.details();
    assert!(details.contains(&("line", "3".to_owned())));
    assert!(details.contains(&("column", "16".to_owned())));
    assert!(e.hint().contains("line 3"));
}

#[test]
fn columns_count_characters_not_bytes() {
    let text = "[defaults.environment]\nGREETING = \"héllo\" x\n";
    let ConfigError::Parse { line, column, .. } = parse(text).unwrap_err() else {
        panic!("expected a parse error");
    };
    assert_eq!((line, column), (Some(2), Some(20)));
}

#[test]
fn unknown_field_is_e1001_with_position() {
    let text = "[defaults]\ntimeout_ms = 5\n\n[defaults.resources]\nmemory_limit = 5\n";
    let e = parse(text).unwrap_err();
    assert_eq!(e.code(), "E1001");
    let msg = e.to_string();
    assert!(msg.contains("at line 5, column 1"), "{msg}");
    assert!(msg.contains("memory_limit"), "{msg}");
}

#[test]
fn wrong_type_is_e1001_with_position() {
    let e = parse("[defaults]\ntimeout_ms = \"soon\"\n").unwrap_err();
    assert_eq!(e.code(), "E1001");
    assert!(e.to_string().contains("at line 2"), "{e}");
    let e = parse("[defaults.isolation]\nnetwork = \"yes\"\n").unwrap_err();
    assert_eq!(e.code(), "E1001");
    let e = parse("[platform.linux]\ncgroups_version = \"v3\"\n").unwrap_err();
    assert_eq!(e.code(), "E1001");
    assert!(e.to_string().contains("v3"), "{e}");
    let e = parse("[defaults]\ntimeout_ms = -5\n").unwrap_err();
    assert_eq!(e.code(), "E1001");
}

#[test]
fn unknown_profile_lists_available_names() {
    let text = "[profiles.dev]\ntimeout_ms = 1\n[profiles.ci]\n[profiles.ai-agent]\n";
    let e = resolve(text, Some("production")).unwrap_err();
    assert_eq!(e.code(), "E1004");
    assert_eq!(e.to_string(), "unknown profile 'production' (available: ai-agent, ci, dev)");
    assert!(e.details().contains(&("available", "ai-agent,ci,dev".to_owned())));
    let e = resolve("", Some("production")).unwrap_err();
    assert_eq!(e.code(), "E1004");
    assert!(e.to_string().contains("no profiles are defined"), "{e}");
}

#[test]
fn out_of_range_memory_reports_the_range() {
    let e = parse("[defaults.resources]\nmemory_bytes = \"1M\"\n").unwrap_err();
    assert_eq!(e.code(), "E1003");
    assert_eq!(
        e.to_string(),
        "configuration file /etc/airlock/config.toml: defaults.resources.memory_bytes value \
         '1M' is out of range: allowed 4194304..=1099511627776 bytes (4MiB..=1TiB)"
    );
    assert!(matches!(e.root(), ConfigError::OutOfRange { min: 4194304, max: 1099511627776, .. }));
    assert!(e.hint().contains("4MiB..=1TiB"));

    let e = parse("[defaults.resources]\nmemory_bytes = 2199023255552\n").unwrap_err();
    assert_eq!(e.code(), "E1003");
    let e = parse("[defaults.resources]\nmemory_bytes = -1\n").unwrap_err();
    assert_eq!(e.code(), "E1003");
    assert!(e.to_string().contains("'-1' is out of range"), "{e}");
}

#[test]
fn every_range_is_enforced_in_files() {
    let cases = [
        ("[defaults]\ntimeout_ms = 0", "defaults.timeout_ms"),
        ("[defaults]\ntimeout_ms = 86400001", "defaults.timeout_ms"),
        ("[defaults.resources]\ncpu = 0", "defaults.resources.cpu"),
        ("[defaults.resources]\ncpu = \"1025\"", "defaults.resources.cpu"),
        ("[defaults.resources]\ncpu = -1", "defaults.resources.cpu"),
        ("[defaults.resources]\ncpu_shares = 1", "defaults.resources.cpu_shares"),
        ("[defaults.resources]\nmax_output_bytes = \"2G\"", "defaults.resources.max_output_bytes"),
        ("[defaults.resources]\nmax_pids = 0", "defaults.resources.max_pids"),
        ("[defaults.resources]\nmax_cpu_time_ms = 0", "defaults.resources.max_cpu_time_ms"),
        ("[defaults.resources]\nmax_file_bytes = 0", "defaults.resources.max_file_bytes"),
        ("[defaults.resources]\nmax_file_bytes = \"5E\"", "defaults.resources.max_file_bytes"),
        ("[defaults.resources]\nmax_open_files = 7", "defaults.resources.max_open_files"),
        ("[defaults.resources]\ntmp_size_bytes = \"512K\"", "defaults.resources.tmp_size_bytes"),
        ("[defaults.resources]\nworkspace_size_bytes = \"2T\"", "defaults.resources.workspace_size_bytes"),
        ("[security]\nmax_concurrent_executions = 0", "security.max_concurrent_executions"),
        ("[security]\nmax_concurrent_executions = 10001", "security.max_concurrent_executions"),
        ("[profiles.x.resources]\nmax_pids = 0", "profiles.x.resources.max_pids"),
    ];
    for (text, field) in cases {
        let e = parse(text).unwrap_err();
        assert_eq!(e.code(), "E1003", "{text}: {e}");
        match e.root() {
            ConfigError::OutOfRange { field: f, .. } => assert_eq!(f, field, "{text}"),
            other => panic!("{text}: expected out of range, got {other:?}"),
        }
    }
}

#[test]
fn unparsable_quantities_are_e1003_naming_the_field() {
    let e = parse("[defaults.resources]\nmemory_bytes = \"12Q\"\n").unwrap_err();
    assert_eq!(e.code(), "E1003");
    assert!(
        e.to_string().contains("invalid defaults.resources.memory_bytes '12Q': unknown size suffix 'Q'"),
        "{e}"
    );
    assert!(e.hint().contains("256M"), "{}", e.hint());
    let e = parse("[defaults.resources]\nmemory_bytes = 1.5\n").unwrap_err();
    assert_eq!(e.code(), "E1003");
    let e = parse("[profiles.p.resources]\ncpu = \"lots\"\n").unwrap_err();
    assert_eq!(e.code(), "E1003");
    assert!(e.to_string().contains("invalid profiles.p.resources.cpu 'lots'"), "{e}");
    // Not a number or a string at all: a type error.
    let e = parse("[defaults.resources]\nmemory_bytes = true\n").unwrap_err();
    assert_eq!(e.code(), "E1001");
}

#[test]
fn quantities_accept_integers_and_strings() {
    let text = r#"
[defaults.resources]
memory_bytes = 268435456
max_output_bytes = "512K"
max_file_bytes = "1GiB"
tmp_size_bytes = "64mb"
workspace_size_bytes = "1Gi"
cpu = 0.5
"#;
    let r = resolve(text, None).unwrap();
    assert_eq!(r.memory_bytes, Some(256 * MIB));
    assert_eq!(r.max_output_bytes, Some(512 * 1024));
    assert_eq!(r.max_file_bytes, Some(1024 * MIB));
    assert_eq!(r.tmp_size_bytes, Some(64 * MIB));
    assert_eq!(r.workspace_size_bytes, Some(1024 * MIB));
    assert_eq!(r.cpu_millis, Some(500));
    for (cpu, millis) in [("2", 2000), ("\"2\"", 2000), ("\"500m\"", 500), ("\"1.25\"", 1250)] {
        let r = resolve(&format!("[defaults.resources]\ncpu = {cpu}\n"), None).unwrap();
        assert_eq!(r.cpu_millis, Some(millis), "cpu = {cpu}");
    }
}

#[test]
fn profile_overrides_defaults_field_by_field() {
    let text = r#"
[defaults]
timeout_ms = 10000

[defaults.environment]
PATH = "/usr/bin:/bin"
LANG = "C"

[defaults.resources]
memory_bytes = "512M"
max_pids = 50
cpu = "1"

[defaults.isolation]
network = false
readonly_paths = ["/opt/data", "/opt/tools"]
writable_paths = ["/srv/out"]
bind_mounts = ["/host/a:/a"]
working_directory = "/workspace"

[profiles.big]
description = "more of everything"
timeout_ms = 60000

[profiles.big.environment]
LANG = "C.UTF-8"
EXTRA = "1"

[profiles.big.resources]
memory_bytes = "2G"

[profiles.big.isolation]
network = true
readonly_paths = ["/opt/big"]
bind_mounts = []

[profiles.empty]
"#;
    let config = parse(text).unwrap();

    let base = config.resolve(None).unwrap();
    assert_eq!(base.timeout_ms, Some(10_000));
    assert_eq!(base.memory_bytes, Some(512 * MIB));
    assert_eq!(base.max_pids, Some(50));
    assert_eq!(base.env.len(), 2);
    assert_eq!(base.bind_mounts.len(), 1);
    // Built-in defaults fill what the file leaves out.
    assert_eq!(base.max_open_files, Some(256));

    let big = config.resolve(Some("big")).unwrap();
    assert_eq!(big.profile.as_deref(), Some("big"));
    assert_eq!(big.description.as_deref(), Some("more of everything"));
    assert_eq!(big.timeout_ms, Some(60_000)); // profile wins
    assert_eq!(big.memory_bytes, Some(2048 * MIB)); // profile wins
    assert_eq!(big.max_pids, Some(50)); // not set in the profile: default kept
    assert_eq!(big.cpu_millis, Some(1000));
    assert_eq!(big.max_open_files, Some(256)); // built-in layer
    let env: BTreeMap<&str, &str> = big.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(env, BTreeMap::from([("EXTRA", "1"), ("LANG", "C.UTF-8"), ("PATH", "/usr/bin:/bin")]));
    assert_eq!(big.network, Some(true));
    assert_eq!(big.readonly_paths, vec![PathBuf::from("/opt/big")]); // replaced, not appended
    assert_eq!(big.writable_paths, vec![PathBuf::from("/srv/out")]); // not set: kept
    assert!(big.bind_mounts.is_empty()); // set to empty: replaced
    assert_eq!(big.working_directory, Some(PathBuf::from("/workspace")));

    let empty = config.resolve(Some("empty")).unwrap();
    assert_eq!(Resolved { profile: None, ..empty }, base);
}

#[test]
fn file_overrides_builtin_platform_and_security() {
    let text = r#"
[platform.linux]
enable_seccomp = false
landlock = "required"

[security]
max_concurrent_executions = 3
blocked_commands = ["sudo", "su"]
"#;
    let r = resolve(text, None).unwrap();
    assert_eq!(r.platform.cgroups_version, CgroupsVersion::Auto);
    assert!(!r.platform.enable_seccomp);
    assert_eq!(r.platform.landlock, LandlockMode::Required);
    assert_eq!(r.security.max_concurrent_executions, 3);
    assert!(!r.security.permits("/usr/bin/sudo"));
    assert!(r.security.permits("python3"));
    let r = resolve("[platform.linux]\ncgroups_version = \"v1\"\n", None).unwrap();
    assert_eq!(r.platform.cgroups_version, CgroupsVersion::V1);
}

#[test]
fn bind_mounts_in_files() {
    let r = resolve(
        "[defaults.isolation]\nbind_mounts = [\"/host/data:/data:ro\", \"/host/out:/out:rw\"]\n",
        None,
    )
    .unwrap();
    assert_eq!(
        r.bind_mounts,
        vec![
            BindSpec { source: "/host/data".into(), destination: "/data".into(), readonly: true },
            BindSpec { source: "/host/out".into(), destination: "/out".into(), readonly: false },
        ]
    );

    let e = parse("[defaults.isolation]\nbind_mounts = [\"/host/data\"]\n").unwrap_err();
    assert_eq!(e.code(), "E1002");
    assert!(
        e.to_string()
            .contains("defaults.isolation.bind_mounts entry '/host/data' is missing required destination"),
        "{e}"
    );
    let e = parse("[profiles.p.isolation]\nbind_mounts = [\"relative/path:/x\"]\n").unwrap_err();
    assert_eq!(e.code(), "E1003");
    assert!(
        e.to_string().contains("invalid profiles.p.isolation.bind_mounts entry 'relative/path:/x'"),
        "{e}"
    );
    let e = parse("[defaults.isolation]\nbind_mounts = [\"/a:/b:rx\"]\n").unwrap_err();
    assert_eq!(e.code(), "E1003");
}

#[test]
fn paths_and_names_are_checked() {
    let cases = [
        "[defaults.isolation]\nreadonly_paths = [\"opt/data\"]",
        "[defaults.isolation]\nwritable_paths = [\"/\"]",
        "[defaults.isolation]\nwritable_paths = [\"/srv/../etc\"]",
        "[defaults.isolation]\nworking_directory = \"workspace\"",
        "[defaults.isolation]\nworkspace = \"./dir\"",
        "[defaults.environment]\n\"A=B\" = \"x\"",
        "[defaults.environment]\n\"\" = \"x\"",
        "[defaults.environment]\nA = \"x\\u0000y\"",
        "[security]\nblocked_commands = [\"/usr/bin/sudo\"]",
        "[security]\nallowed_commands = [\"\"]",
        "[security]\nblocked_commands = [\"sh\"]\nallowed_commands = [\"sh\"]",
    ];
    for text in cases {
        let e = parse(text).unwrap_err();
        assert_eq!(e.code(), "E1003", "{text}: {e}");
    }
    let r = resolve("[defaults.isolation]\nworking_directory = \"/\"\n", None).unwrap();
    assert_eq!(r.working_directory, Some(PathBuf::from("/")));
}

#[test]
fn errors_in_unused_profiles_fail_the_load() {
    let e = parse("[profiles.unused.resources]\nmemory_bytes = \"1K\"\n").unwrap_err();
    assert_eq!(e.code(), "E1003");
    assert!(
        e.to_string().contains("profiles.unused.resources.memory_bytes value '1K' is out of range"),
        "{e}"
    );
}

#[test]
fn capsule_run_files_load() {
    // The "high-performance configuration" of capsule-run's troubleshooting guide.
    let text = r#"
# High-performance configuration
[defaults]
timeout_ms = 30000

[defaults.resources]
memory_bytes = 1073741824   # 1GB - generous limit
cpu_shares = 2048           # High priority
max_output_bytes = 10485760 # 10MB output
max_pids = 100              # Reasonable process limit

[monitoring]
enable_resource_tracking = true
monitor_interval_ms = 100   # Less frequent monitoring
enable_io_statistics = false # Disable if not needed

[security]
max_concurrent_executions = 5 # Limit concurrency

[platform.macos]
enable_sandbox_exec = false

[platform.windows]
enable_job_objects = true
monitoring_method = "wmi"

[platform.linux]
cgroups_version = "v2"
enable_seccomp = false

[profiles.production]
timeout_ms = 60000

[profiles.production.resources]
memory_bytes = 1073741824
"#;
    let config = parse(text).unwrap();
    assert!(config.monitoring.is_some());
    assert!(config.platform.macos.is_some());
    let r = config.resolve(Some("production")).unwrap();
    assert_eq!(r.timeout_ms, Some(60_000));
    assert_eq!(r.memory_bytes, Some(1 << 30));
    assert_eq!(r.cpu_shares, Some(2048));
    assert_eq!(r.max_output_bytes, Some(10 * MIB));
    assert_eq!(r.max_pids, Some(100));
    assert_eq!(r.security.max_concurrent_executions, 5);
    assert_eq!(r.platform.cgroups_version, CgroupsVersion::V2);
}

#[test]
fn load_reads_files_and_reports_problems() {
    let dir = TempDir::new("load");
    let path = dir.path().join("config.toml");
    fs::write(&path, "[defaults]\ntimeout_ms = 1234\n").unwrap();
    let r = load(&path).unwrap().resolve(None).unwrap();
    assert_eq!(r.timeout_ms, Some(1234));

    let missing = dir.path().join("missing.toml");
    let e = load(&missing).unwrap_err();
    assert_eq!(e.code(), "E1001");
    assert_eq!(e.to_string(), format!("configuration file {} not found", missing.display()));

    let e = load(dir.path()).unwrap_err();
    assert_eq!(e.code(), "E1001");
    assert!(matches!(e, ConfigError::Read { .. }), "{e:?}");
    assert!(e.to_string().starts_with("cannot read configuration file"), "{e}");

    let big = dir.path().join("big.toml");
    fs::write(&big, "#".repeat(MAX_CONFIG_BYTES as usize + 1)).unwrap();
    let e = load(&big).unwrap_err();
    assert!(e.to_string().contains("larger than 1 MiB"), "{e}");

    let bad = dir.path().join("bad.toml");
    fs::write(&bad, "[defaults]\n\n[defaults\n").unwrap();
    let e = load(&bad).unwrap_err();
    assert!(
        e.to_string().starts_with(&format!("invalid configuration file {} at line 3", bad.display())),
        "{e}"
    );

    let utf = dir.path().join("latin1.toml");
    fs::write(&utf, b"# caf\xe9\n").unwrap();
    assert_eq!(load(&utf).unwrap_err().code(), "E1001");
}

#[test]
fn create_config_writes_the_defaults_and_never_overwrites() {
    let dir = TempDir::new("create");
    let path = dir.path().join("airlock.toml");
    create_config(&path).unwrap();
    assert_eq!(fs::read_to_string(&path).unwrap(), embedded_default());
    assert_eq!(load(&path).unwrap().resolve(None).unwrap(), Config::default().resolve(None).unwrap());

    fs::write(&path, "# mine\n").unwrap();
    let e = create_config(&path).unwrap_err();
    assert_eq!(e.code(), "E1001");
    assert_eq!(e.to_string(), format!("configuration file {} already exists", path.display()));
    assert_eq!(fs::read_to_string(&path).unwrap(), "# mine\n");

    let e = create_config(&dir.path().join("no/such/dir.toml")).unwrap_err();
    assert!(matches!(e, ConfigError::Write { .. }), "{e:?}");
}

#[test]
fn line_column_arithmetic() {
    assert_eq!(line_column("abc", 0), (1, 1));
    assert_eq!(line_column("abc", 2), (1, 3));
    assert_eq!(line_column("a\nbc", 2), (2, 1));
    assert_eq!(line_column("a\nbc", 3), (2, 2));
    assert_eq!(line_column("a\n", 99), (2, 1));
    assert_eq!(line_column("é", 1), (1, 1));
}
