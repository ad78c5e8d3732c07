//! `airlock doctor`: checks the host for every failure cause the troubleshooting guides list that
//! applies to this engine, and prints the command that fixes each problem.

use std::path::Path;

use airlock_jail::{
    CgroupPreference, Collector, HostIdentity, LandlockMode, Limits, NetworkMode, Protections, SandboxSpec,
    Stdin, Workspace, DEFAULT_PATH,
};
use serde::Serialize;

use crate::args::DoctorArgs;

/// Result of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Level {
    Ok,
    Warn,
    Fail,
}

#[derive(Debug, Serialize)]
struct Check {
    check: &'static str,
    status: Level,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    fix: Option<String>,
}

impl Check {
    fn new(check: &'static str, status: Level, detail: impl Into<String>, fix: Option<String>) -> Check {
        Check { check, status, detail: detail.into(), fix }
    }
}

/// Run every check; exit status 1 when one failed.
pub fn main(args: &DoctorArgs) -> i32 {
    let checks = vec![
        user_namespaces(),
        apparmor_userns(),
        sandbox_start(),
        cgroups(),
        seccomp(),
        landlock(),
        runtime_dir(),
        temp_dir(),
        interpreter("python3"),
        interpreter("node"),
    ];
    if args.json {
        println!("{}", serde_json::to_string_pretty(&checks).unwrap_or_default());
    } else {
        for c in &checks {
            let tag = match c.status {
                Level::Ok => "ok  ",
                Level::Warn => "warn",
                Level::Fail => "FAIL",
            };
            println!("{tag} {:<18} {}", c.check, c.detail);
            if let Some(fix) = &c.fix {
                println!("     {:<18} fix: {fix}", "");
            }
        }
    }
    i32::from(checks.iter().any(|c| c.status == Level::Fail))
}

fn read_sysctl(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn user_namespaces() -> Check {
    let max = read_sysctl("/proc/sys/user/max_user_namespaces").and_then(|v| v.parse::<u64>().ok());
    if max == Some(0) {
        return Check::new(
            "user_namespaces",
            Level::Fail,
            "user.max_user_namespaces is 0",
            Some("sysctl -w user.max_user_namespaces=15000".into()),
        );
    }
    let debian = read_sysctl("/proc/sys/kernel/unprivileged_userns_clone");
    if debian.as_deref() == Some("0") && !is_root() {
        return Check::new(
            "user_namespaces",
            Level::Fail,
            "kernel.unprivileged_userns_clone is 0: unprivileged users cannot create user namespaces",
            Some("sysctl -w kernel.unprivileged_userns_clone=1".into()),
        );
    }
    Check::new("user_namespaces", Level::Ok, format!("enabled (max {})", max.unwrap_or(0)), None)
}

fn apparmor_userns() -> Check {
    match read_sysctl("/proc/sys/kernel/apparmor_restrict_unprivileged_userns").as_deref() {
        Some("1") if !is_root() => Check::new(
            "apparmor_userns",
            Level::Fail,
            "AppArmor restricts unprivileged user namespaces",
            Some("sysctl -w kernel.apparmor_restrict_unprivileged_userns=0 (or add an AppArmor profile with `userns,` for airlock)".into()),
        ),
        Some("1") => Check::new("apparmor_userns", Level::Ok, "restricted for unprivileged users; root is not affected", None),
        _ => Check::new("apparmor_userns", Level::Ok, "no AppArmor user namespace restriction", None),
    }
}

/// Start a real sandbox with every protection on: this is the check that proves user
/// namespaces, `/proc`, mounts, seccomp and landlock work together on this host.
fn sandbox_start() -> Check {
    let spec = SandboxSpec {
        argv: vec!["/bin/true".into()],
        env: vec![("PATH".into(), DEFAULT_PATH.into())],
        workdir: "/".into(),
        workspace: Workspace::Fresh { size_bytes: 1 << 20 },
        binds: Vec::new(),
        network: NetworkMode::None,
        limits: Limits { tmp_size_bytes: 1 << 20, ..Limits::default() },
        protections: Protections {
            seccomp: true,
            landlock: LandlockMode::IfSupported,
            cgroup: CgroupPreference::Auto,
        },
        identity: HostIdentity::for_caller(std::process::id()),
        stdin: Stdin::Null,
        hostname: "airlock".into(),
    };
    match airlock_jail::run(&spec, &mut Collector::default()) {
        Ok(o) if o.exit_code == Some(0) => Check::new(
            "sandbox",
            Level::Ok,
            format!("a sandbox starts and runs /bin/true ({} ms)", o.usage.wall.as_millis()),
            None,
        ),
        Ok(o) => Check::new("sandbox", Level::Fail, format!("/bin/true ended with {:?}", o.status), None),
        Err(e) => {
            let fix = match e.code() {
                "proc_mount_failed" => "/proc cannot be mounted: run on a host (or container) whose /proc is not partly masked, e.g. docker run --security-opt systempaths=unconfined",
                "userns_unavailable" => "enable user namespaces (see the user_namespaces check above)",
                _ => e.hint(),
            };
            Check::new("sandbox", Level::Fail, format!("{} ({})", e, e.code()), Some(fix.into()))
        }
    }
}

fn cgroups() -> Check {
    let probe = airlock_jail::cgroup::probe(CgroupPreference::Auto);
    match probe.usable() {
        Some(v) => {
            Check::new("cgroups", Level::Ok, format!("{v:?} enforces memory, pids and cpu limits"), None)
        }
        None => Check::new(
            "cgroups",
            Level::Warn,
            "no usable cgroup: memory, pids and cpu limits cannot be enforced (runs that ask for them fail)",
            Some(if probe.hints.is_empty() {
                "run as root, or run airlock from a cgroup v2 subtree delegated to you whose cgroup.subtree_control already enables memory, pids and cpu".into()
            } else {
                probe.hints.join("; ")
            }),
        ),
    }
}

fn seccomp() -> Check {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let actions = read_sysctl("/proc/sys/kernel/seccomp/actions_avail").unwrap_or_default();
    if !status.contains("Seccomp:") || !actions.contains("errno") {
        return Check::new(
            "seccomp",
            Level::Fail,
            "the kernel has no seccomp filter support",
            Some("use a kernel built with CONFIG_SECCOMP_FILTER=y".into()),
        );
    }
    match airlock_jail::seccomp::compile_default() {
        Ok(_) => Check::new("seccomp", Level::Ok, format!("filter mode available ({actions})"), None),
        Err(e) => Check::new("seccomp", Level::Fail, e.to_string(), None),
    }
}

fn landlock() -> Check {
    match airlock_jail::landlock_abi() {
        0 => Check::new(
            "landlock",
            Level::Warn,
            "not available: file access is limited by mounts only",
            Some("use Linux 5.13+ with landlock in the LSM list (boot with lsm=landlock,...)".into()),
        ),
        abi => Check::new("landlock", Level::Ok, format!("ABI {abi}"), None),
    }
}

fn writable_dir(check: &'static str, dir: &Path) -> Check {
    let probe = std::fs::create_dir_all(dir).and_then(|()| tempfile_in(dir));
    match probe {
        Ok(()) => Check::new(check, Level::Ok, format!("{} is writable", dir.display()), None),
        Err(e) => Check::new(
            check,
            Level::Fail,
            format!("{} is not writable: {e}", dir.display()),
            Some(format!("mkdir -p {0} && chown $(id -u) {0}", dir.display())),
        ),
    }
}

fn tempfile_in(dir: &Path) -> std::io::Result<()> {
    let path = dir.join(format!(".airlock-doctor-{}", std::process::id()));
    std::fs::write(&path, b"")?;
    std::fs::remove_file(&path)
}

fn runtime_dir() -> Check {
    writable_dir("runtime_dir", &crate::run_cmd::runtime_dir())
}

fn temp_dir() -> Check {
    writable_dir("temp_dir", &std::env::temp_dir())
}

/// The host template binds /usr: an interpreter must live there to be usable inside.
fn interpreter(name: &'static str) -> Check {
    let found = DEFAULT_PATH.split(':').map(|d| Path::new(d).join(name)).find(|p| p.exists());
    match found {
        Some(p) => Check::new(name, Level::Ok, format!("{} (visible inside the sandbox)", p.display()), None),
        None => Check::new(
            name,
            Level::Warn,
            format!("{name} is not installed under /usr, so sandboxes cannot run it"),
            Some(format!("apt-get install {}", if name == "node" { "nodejs" } else { name })),
        ),
    }
}
