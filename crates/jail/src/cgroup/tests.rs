//! Tests against the real cgroup filesystem. Those named `root_*` need root: CI runs them as
//! root and skips them (`--skip root_`) in its unprivileged pass; run without root they fail
//! rather than pass. The version they exercise is whatever `Auto` picks on the host
//! (v1 on a hybrid host, v2 on a pure v2 host); the fake-tree tests live next to the code.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;

use super::*;

/// A scratch directory removed on drop.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new(tag: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "airlock-cgroup-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
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

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test creates real cgroups and must run as root (CI runs root_* tests as root only)"
    );
}

fn unique(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!("test-{}-{tag}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// Start `sh -c script` blocked on reading a line, so it can be moved into a cgroup before it
/// does anything.
fn spawn_gated(script: &str) -> Child {
    Command::new("/bin/sh")
        .arg("-c")
        .arg(format!("read _go; {script}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn /bin/sh")
}

fn release(child: &mut Child) {
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"go\n").unwrap();
}

fn read_trim(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display())).trim().to_owned()
}

fn procs(dir: &Path) -> Vec<i32> {
    read_trim(&dir.join("cgroup.procs")).lines().filter_map(|l| l.parse().ok()).collect()
}

#[test]
fn errors_are_lowercase_and_name_the_path() {
    let e = CgroupError::Create { path: "/sys/fs/cgroup/memory/airlock".into(), errno: Errno::EACCES };
    assert_eq!(
        e.to_string(),
        "cannot create cgroup /sys/fs/cgroup/memory/airlock: permission denied (EACCES)"
    );
    let e = CgroupError::Limit {
        limit: "max_pids",
        path: "/x/pids.max".into(),
        value: "5".into(),
        errno: Errno::EINVAL,
    };
    assert_eq!(
        e.to_string(),
        "cannot apply limit max_pids: writing \"5\" to /x/pids.max failed: invalid argument (EINVAL)"
    );
    assert!(matches!(
        Cgroup::create(CgroupPreference::Auto, "a/b", &Limits::default()),
        Err(CgroupError::InvalidName(_))
    ));
}

#[test]
fn shared_base_stays_and_stale_runs_of_dead_supervisors_are_swept() {
    let t = TempDir::new("base");
    let base = t.path().join(BASE_DIR_NAME);
    let far = Instant::now() + Duration::from_millis(100);
    let mut a = make_run_dir(&base, "a", |_| Ok(())).unwrap();
    assert!(matches!(
        make_run_dir(&base, "a", |_| Ok(())),
        Err(CgroupError::Create { errno: Errno::EEXIST, .. })
    ));
    a.remove(far).unwrap();
    a.remove(far).unwrap(); // idempotent
    assert!(base.is_dir() && !base.join("a").exists(), "the shared base is kept for later runs");

    // A run directory of a supervisor that no longer exists is removed by the next run; one of
    // a live supervisor (this test process) is left alone.
    let dead = base.join(format!("run-{}-0", u32::MAX - 1));
    let live = base.join(format!("run-{}-0", std::process::id()));
    std::fs::create_dir(&dead).unwrap();
    std::fs::create_dir(&live).unwrap();
    let mut b = make_run_dir(&base, "b", |_| Ok(())).unwrap();
    assert!(!dead.exists() && live.exists());
    b.remove(far).unwrap();

    // A failed preparation creates no run directory.
    let err = make_run_dir(&base, "c", |p| {
        Err(CgroupError::Write {
            path: p.join("cgroup.subtree_control"),
            value: "+memory".into(),
            errno: Errno::EACCES,
        })
    });
    assert!(err.is_err() && !base.join("c").exists());
}

#[test]
fn auto_picks_v1_on_hybrid_text() {
    // A hybrid layout (v1 controllers, a cgroup2 mount offering only hugetlb), rebuilt in a temp dir.
    let t = TempDir::new("select");
    let m = t.path();
    std::fs::create_dir_all(m.join("unified")).unwrap();
    std::fs::write(m.join("unified/cgroup.controllers"), "hugetlb\n").unwrap();
    std::fs::write(m.join("unified/cgroup.subtree_control"), "").unwrap();
    for c in ["memory", "pids", "cpu"] {
        std::fs::create_dir_all(m.join(c)).unwrap();
    }
    let mountinfo = format!(
        "1 0 0:1 / {m}/memory rw - cgroup cgroup rw,memory\n\
         2 0 0:2 / {m}/pids rw - cgroup cgroup rw,pids\n\
         3 0 0:3 / {m}/cpu rw - cgroup cgroup rw,cpu\n\
         4 0 0:4 / {m}/unified rw - cgroup2 cgroup2 rw\n",
        m = m.display()
    );
    let h = Hierarchies::parse(&mountinfo, "3:memory:/\n2:pids:/\n1:cpu:/\n0::/\n");
    let limits = Limits { memory_bytes: Some(1 << 26), max_pids: Some(8), ..Limits::default() };
    let sel = Selection::new(&h, CgroupPreference::Auto, &limits, true);
    assert_eq!(sel.chosen(), Some(CgroupVersion::V1));
    let sel = Selection::new(&h, CgroupPreference::V2, &limits, true);
    assert_eq!(sel.chosen(), None);
    let why = sel.why_not();
    assert!(why.contains("lacks memory pids (it offers: hugetlb)"), "{why}");
    assert!(!why.contains("cgroup v1"), "{why}");
    // Without limits Auto still prefers v1 here, where memory and pids give statistics.
    let sel = Selection::new(&h, CgroupPreference::Auto, &Limits::default(), true);
    assert_eq!(sel.chosen(), Some(CgroupVersion::V1));

    let p = probe_in(&h, CgroupPreference::Auto, &limits, true);
    assert_eq!(p.chosen, Some(CgroupVersion::V1));
    assert!(p.v2.mounted && !p.v2.usable && !p.v2.reasons.is_empty());
    assert_eq!(p.v2.controllers, ["hugetlb"]);
    assert!(p.v1.usable);
    assert_eq!(p.v1.controllers, ["cpu", "memory", "pids"]);
    assert_eq!(p.v1.bases.len(), 2);
    assert!(p.hints.is_empty(), "{:?}", p.hints);
    let p = probe_in(&h, CgroupPreference::V2, &limits, true);
    assert_eq!(p.chosen, None);
    assert!(p.hints.iter().any(|h| h.contains("set the cgroup preference to auto")), "{:?}", p.hints);
}

#[test]
fn root_create_limits_add_destroy() {
    require_root();
    let limits = Limits {
        memory_bytes: Some(64 << 20),
        max_pids: Some(16),
        cpu_millis: Some(500),
        ..Limits::default()
    };
    let cg = Cgroup::create(CgroupPreference::Auto, &unique("life"), &limits).expect("create cgroup");
    let paths: Vec<PathBuf> = cg.paths().iter().map(|p| p.to_path_buf()).collect();
    match cg.version() {
        CgroupVersion::V1 => {
            let v1 = match &cg.inner {
                Inner::V1(c) => c,
                Inner::V2(_) => unreachable!(),
            };
            let mem = v1.dir_of("memory").unwrap();
            assert_eq!(read_trim(&mem.join("memory.limit_in_bytes")), "67108864");
            if mem.join("memory.memsw.limit_in_bytes").exists() {
                assert_eq!(read_trim(&mem.join("memory.memsw.limit_in_bytes")), "67108864");
            }
            assert_eq!(read_trim(&v1.dir_of("pids").unwrap().join("pids.max")), "16");
            let cpu = v1.dir_of("cpu").unwrap();
            assert_eq!(read_trim(&cpu.join("cpu.cfs_period_us")), "100000");
            assert_eq!(read_trim(&cpu.join("cpu.cfs_quota_us")), "50000");
        }
        CgroupVersion::V2 => {
            let d = &paths[0];
            assert_eq!(read_trim(&d.join("memory.max")), "67108864");
            assert_eq!(read_trim(&d.join("pids.max")), "16");
            assert_eq!(read_trim(&d.join("cpu.max")), "50000 100000");
        }
    }

    let mut child = Command::new("sleep").arg("30").spawn().unwrap();
    let pid = child.id() as i32;
    cg.add_process(pid).unwrap();
    for p in &paths {
        assert!(procs(p).contains(&pid), "{pid} not in {}/cgroup.procs", p.display());
    }
    cg.destroy().expect("destroy");
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(9), "sleep was not killed: {status:?}");
    for p in &paths {
        assert!(!p.exists(), "{} still exists", p.display());
    }
}

#[test]
fn root_stats_after_work() {
    require_root();
    // A CPU limit joins the cpu hierarchy; where cpuacct is mounted on its own it is not joined
    // and CPU time comes from rusage instead, so only check it where the counters exist.
    let limits = Limits { memory_bytes: Some(256 << 20), cpu_millis: Some(2000), ..Limits::default() };
    let cg = Cgroup::create(CgroupPreference::Auto, &unique("stats"), &limits).unwrap();
    let mut child =
        spawn_gated("head -c 20000000 /dev/urandom | cksum; x=$(head -c 4000000 /dev/zero | tr '\\0' a)");
    cg.add_process(child.id() as i32).unwrap();
    release(&mut child);
    assert!(child.wait().unwrap().success());
    let s = cg.stats();
    eprintln!("stats after work ({:?}): {s:?}", cg.version());
    assert!(s.memory_peak_bytes.unwrap_or(0) > 4_000_000, "{s:?}");
    if cg.controllers().iter().any(|c| c == "cpuacct") {
        let cpu = s.cpu_user_ns.unwrap_or(0) + s.cpu_system_ns.unwrap_or(0);
        assert!(cpu > 1_000_000, "{s:?}");
    }
    assert_eq!((s.oom_kills, s.pids_max_hits), (0, 0));
    cg.destroy().unwrap();
}

#[test]
fn root_oom_kill_is_counted() {
    require_root();
    let limits = Limits { memory_bytes: Some(32 << 20), ..Limits::default() };
    let cg = Cgroup::create(CgroupPreference::Auto, &unique("oom"), &limits).unwrap();
    // tail keeps the whole "line" of zeros in memory: it grows until the OOM killer stops it.
    let mut child = spawn_gated("head -c 300M /dev/zero | tail -n 1 >/dev/null");
    cg.add_process(child.id() as i32).unwrap();
    release(&mut child);
    let status = child.wait().unwrap();
    assert!(!status.success(), "the allocation should have been killed: {status:?}");
    let s = cg.stats();
    eprintln!("stats after oom ({:?}): {s:?}", cg.version());
    assert!(s.oom_kills >= 1, "{s:?}");
    cg.destroy().unwrap();
}

#[test]
fn root_pids_limit_is_counted_and_destroy_kills_the_tree() {
    require_root();
    let limits = Limits { max_pids: Some(5), ..Limits::default() };
    let cg = Cgroup::create(CgroupPreference::Auto, &unique("pids"), &limits).unwrap();
    let mut child = spawn_gated("for i in 1 2 3 4 5 6 7 8 9 10; do sleep 30 & done; wait");
    cg.add_process(child.id() as i32).unwrap();
    release(&mut child);
    let until = Instant::now() + Duration::from_secs(5);
    while cg.stats().pids_max_hits == 0 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    let s = cg.stats();
    assert!(s.pids_max_hits >= 1, "{s:?}");
    let paths: Vec<PathBuf> = cg.paths().iter().map(|p| p.to_path_buf()).collect();
    let left: Vec<i32> = paths.iter().flat_map(|p| procs(p)).collect();
    assert!(!left.is_empty() && left.len() <= 5 * paths.len(), "{left:?}");
    cg.destroy().unwrap();
    let _ = child.wait();
    for pid in left {
        assert!(!Path::new(&format!("/proc/{pid}/status")).exists() || is_zombie(pid), "pid {pid} survived");
    }
    for p in &paths {
        assert!(!p.exists(), "{} still exists", p.display());
    }
}

fn is_zombie(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.contains(") Z "),
        Err(_) => true,
    }
}

#[test]
fn root_v2_lifecycle_without_controllers() {
    require_root();
    let h = Hierarchies::discover().unwrap();
    if h.v2.is_none() {
        eprintln!("cgroup2 is not mounted on this host: nothing to test");
        return;
    }
    // No limit: works even where the unified hierarchy offers no controller (hybrid hosts), and
    // exercises placement, cgroup.procs, cgroup.kill and rmdir on the real v2 filesystem.
    let cg =
        Cgroup::create(CgroupPreference::V2, &unique("v2"), &Limits::default()).expect("create v2 cgroup");
    assert_eq!(cg.version(), CgroupVersion::V2);
    let dir = cg.paths()[0].to_path_buf();
    let mut child = spawn_gated("sleep 30 & sleep 30 & wait");
    cg.add_process(child.id() as i32).unwrap();
    release(&mut child);
    let until = Instant::now() + Duration::from_secs(5);
    while procs(&dir).len() < 3 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(procs(&dir).len(), 3);
    assert!(cg.stats().cpu_user_ns.is_some());
    cg.destroy().unwrap();
    assert_eq!(child.wait().unwrap().signal(), Some(9));
    assert!(!dir.exists());
}

#[test]
fn root_v2_refuses_limits_it_cannot_enforce() {
    require_root();
    let h = Hierarchies::discover().unwrap();
    let Some(v2) = &h.v2 else {
        eprintln!("cgroup2 is not mounted on this host: nothing to test");
        return;
    };
    let offered = std::fs::read_to_string(v2.mount_point.join("cgroup.controllers")).unwrap();
    if offered.split_whitespace().any(|c| c == "memory") {
        eprintln!("cgroup2 offers memory here: nothing to refuse");
        return;
    }
    let limits = Limits { memory_bytes: Some(1 << 26), ..Limits::default() };
    let err = Cgroup::create(CgroupPreference::V2, &unique("v2no"), &limits).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, CgroupError::Unavailable(_)), "{msg}");
    assert!(msg.contains("lacks memory"), "{msg}");
}

#[test]
fn root_probe_matches_create() {
    require_root();
    let p = probe(CgroupPreference::Auto);
    eprintln!("{p:#?}");
    let chosen = p.chosen.expect("a root caller on the CI host must have a usable cgroup version");
    let limits = Limits {
        memory_bytes: Some(1 << 26),
        max_pids: Some(64),
        cpu_millis: Some(1000),
        ..Limits::default()
    };
    let cg = Cgroup::create(CgroupPreference::Auto, &unique("probe"), &limits).unwrap();
    assert_eq!(cg.version(), chosen);
    let probed = if chosen == CgroupVersion::V1 { &p.v1 } else { &p.v2 };
    assert_eq!(probed.writable, Some(true));
    for path in cg.paths() {
        assert!(probed.bases.iter().any(|b| path.parent() == Some(b.as_path())), "{}", path.display());
    }
    cg.destroy().unwrap();
    let other = if chosen == CgroupVersion::V1 { &p.v2 } else { &p.v1 };
    assert!(other.usable || !other.reasons.is_empty());
}

/// Set in the unprivileged copy of the test binary started by [`unprivileged_create_fails_closed`].
const CHILD_ENV: &str = "AIRLOCK_CGROUP_UNPRIVILEGED_CHILD";

/// Runs in both CI passes. As root it re-runs itself as uid 65534 (from a copy of the test
/// binary that user can execute); unprivileged, it checks that creating a limited cgroup fails
/// with an error that names the path, instead of running without limits.
#[test]
fn unprivileged_create_fails_closed() {
    if nix::unistd::geteuid().is_root() {
        assert!(std::env::var_os(CHILD_ENV).is_none(), "the child must not run as root");
        let t = TempDir::new("unpriv");
        let exe = t.path().join("test-bin");
        std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
        std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        let module = module_path!().split_once("::").map_or(module_path!(), |(_, rest)| rest);
        let out = Command::new(&exe)
            .args(["--exact", "--nocapture", &format!("{module}::unprivileged_create_fails_closed")])
            .env(CHILD_ENV, "1")
            .current_dir(t.path())
            .uid(65534)
            .gid(65534)
            .output()
            .expect("run the test binary as uid 65534");
        let text =
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success() && text.contains("1 passed"), "unprivileged child failed:\n{text}");
        eprintln!("{text}");
        return;
    }
    let limits = Limits { max_pids: Some(8), memory_bytes: Some(1 << 26), ..Limits::default() };
    let err = Cgroup::create(CgroupPreference::Auto, &unique("unpriv"), &limits).unwrap_err();
    let msg = err.to_string();
    eprintln!("unprivileged create: {msg}");
    match &err {
        CgroupError::Create { path, errno } => {
            assert_eq!(*errno, Errno::EACCES, "{msg}");
            assert!(msg.contains(&path.display().to_string()) && msg.contains("permission denied"), "{msg}");
        }
        // A pure v2 host without a delegated subtree refuses before creating anything.
        CgroupError::Unavailable(_) => assert!(msg.contains("uid 0"), "{msg}"),
        other => panic!("unexpected error: {other}"),
    }
}
