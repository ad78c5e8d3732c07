//! The legacy (v1) hierarchies: one run directory per hierarchy used, nested under the
//! caller's own cgroup in that hierarchy.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::fsops::{
    can_create_in, keyed_u64, kill_until_empty, make_run_dir, pids_in_tree, read_opt, set_limit, single_u64,
    teardown_deadlines, write_file, RunDir,
};
use super::{errno_of, CgroupError, CgroupStats, Hierarchies, VersionProbe, BASE_DIR_NAME};
use crate::spec::Limits;

/// Hierarchies joined when available even if no limit needs them, for the outcome: peak
/// memory and OOM kills (memory), refused forks (pids). Each hierarchy costs a directory, a
/// join and a removal per run, so no more: CPU time and I/O come from the init's rusage, which
/// covers every process of the pid namespace, and the namespace's end kills the tree without
/// the freezer (the kernel stops pid allocation in it first). A cgroup created while a
/// `cpuacct`, `blkio` or `freezer` hierarchy is co-mounted with a needed one still uses it.
const OPTIONAL: &[&str] = &["memory", "pids"];

/// `cpuacct.stat` counts in USER_HZ ticks, which is 100 on every Linux architecture.
const NS_PER_USER_HZ_TICK: u64 = 10_000_000;

/// One hierarchy to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct V1PlanDir {
    /// Controllers of the hierarchy.
    pub controllers: Vec<String>,
    /// `<mount>/<caller's path>/airlock`.
    pub base: PathBuf,
    /// Whether a limit needs this hierarchy (else it is only for statistics or the freezer).
    pub required: bool,
}

/// The hierarchies a v1 run cgroup spans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct V1Plan {
    /// One entry per hierarchy, required ones first.
    pub dirs: Vec<V1PlanDir>,
}

/// Find a hierarchy for each required controller (an error naming each one that is missing)
/// and for the optional ones that are there.
pub(crate) fn plan(h: &Hierarchies, required: &[&str]) -> Result<V1Plan, Vec<String>> {
    if h.v1.is_empty() {
        return Err(vec!["no cgroup v1 hierarchy with a controller is mounted".to_owned()]);
    }
    let mut reasons = Vec::new();
    let mut dirs: Vec<V1PlanDir> = Vec::new();
    for (c, is_req) in required.iter().map(|c| (*c, true)).chain(OPTIONAL.iter().map(|c| (*c, false))) {
        let Some(hier) = h.v1_for(c) else {
            if is_req {
                reasons.push(format!("no v1 hierarchy has the {c} controller mounted"));
            }
            continue;
        };
        let own = match &hier.own_dir {
            Some(d) if d.is_dir() => d,
            Some(d) => {
                if is_req {
                    reasons.push(format!("{} (the caller's {c} cgroup) does not exist", d.display()));
                }
                continue;
            }
            None => {
                if is_req {
                    reasons.push(format!(
                        "the caller's {c} cgroup {:?} is not visible under the mount {}",
                        hier.own_path.as_deref().unwrap_or("(unknown)"),
                        hier.mount_point.display()
                    ));
                }
                continue;
            }
        };
        let base = own.join(BASE_DIR_NAME);
        if let Some(d) = dirs.iter_mut().find(|d| d.base == base) {
            d.required |= is_req;
        } else {
            dirs.push(V1PlanDir { controllers: hier.controllers.clone(), base, required: is_req });
        }
    }
    if dirs.is_empty() && reasons.is_empty() {
        reasons.push("no v1 hierarchy is usable (none contains the caller's cgroup)".to_owned());
    }
    if reasons.is_empty() {
        Ok(V1Plan { dirs })
    } else {
        Err(reasons)
    }
}

/// The doctor's view of v1.
pub(crate) fn probe(h: &Hierarchies, plan: &Result<V1Plan, Vec<String>>) -> VersionProbe {
    let mut controllers: Vec<String> =
        h.v1.iter()
            .filter(|x| x.own_dir.as_deref().is_some_and(Path::is_dir))
            .flat_map(|x| x.controllers.iter().cloned())
            .collect();
    controllers.sort();
    match plan {
        Ok(p) => VersionProbe {
            mounted: true,
            usable: true,
            controllers,
            bases: p.dirs.iter().map(|d| d.base.clone()).collect(),
            writable: Some(p.dirs.iter().all(|d| can_create_in(&d.base))),
            reasons: Vec::new(),
        },
        Err(r) => VersionProbe {
            mounted: !h.v1.is_empty(),
            usable: false,
            controllers,
            bases: Vec::new(),
            writable: None,
            reasons: r.clone(),
        },
    }
}

/// The run's directory in one hierarchy.
#[derive(Debug)]
pub(crate) struct V1Dir {
    /// Controllers of that hierarchy.
    pub controllers: Vec<String>,
    /// The directories.
    pub dir: RunDir,
}

/// One run's v1 cgroup: a directory in each hierarchy used.
#[derive(Debug, Default)]
pub(crate) struct V1Cgroup {
    /// One per hierarchy.
    pub dirs: Vec<V1Dir>,
}

impl V1Cgroup {
    /// Create `<base>/<name>` in every planned hierarchy and apply `limits`. A hierarchy that is
    /// only optional is skipped when its directory cannot be created.
    pub(crate) fn create(
        plan: &V1Plan,
        name: &str,
        limits: &Limits,
        host_has_swap: bool,
    ) -> Result<V1Cgroup, CgroupError> {
        let mut cg = V1Cgroup::default();
        let mut first_err = None;
        for pd in &plan.dirs {
            match make_run_dir(&pd.base, name, |_| Ok(())) {
                Ok(dir) => cg.dirs.push(V1Dir { controllers: pd.controllers.clone(), dir }),
                Err(e) if pd.required => {
                    let _ = cg.destroy();
                    return Err(e);
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        if cg.dirs.is_empty() {
            if let Some(e) = first_err {
                return Err(e);
            }
        }
        if let Err(e) = cg.apply_limits(limits, host_has_swap) {
            let _ = cg.destroy();
            return Err(e);
        }
        Ok(cg)
    }

    /// The run directory in the hierarchy carrying `controller`.
    pub(crate) fn dir_of(&self, controller: &str) -> Option<&Path> {
        self.dirs.iter().find(|d| d.controllers.iter().any(|c| c == controller)).map(|d| d.dir.run.as_path())
    }

    fn need(&self, controller: &str, limit: &'static str) -> Result<&Path, CgroupError> {
        self.dir_of(controller).ok_or_else(|| {
            CgroupError::Unavailable(format!(
                "limit {limit} needs the v1 {controller} controller, which is not in use"
            ))
        })
    }

    /// Write the limits that are set.
    pub(crate) fn apply_limits(&self, limits: &Limits, host_has_swap: bool) -> Result<(), CgroupError> {
        if let Some(bytes) = limits.memory_bytes {
            let dir = self.need("memory", "memory_bytes")?;
            let value = bytes.to_string();
            set_limit(dir, "memory.limit_in_bytes", &value, "memory_bytes")?;
            let memsw = dir.join("memory.memsw.limit_in_bytes");
            if memsw.exists() {
                set_limit(dir, "memory.memsw.limit_in_bytes", &value, "memory_bytes")?;
            } else if host_has_swap {
                return Err(CgroupError::Unenforceable {
                    limit: "memory_bytes",
                    path: memsw,
                    reason: "is missing (swap accounting is off, see swapaccount=1) and the host has swap, so swap use would be unlimited",
                });
            }
        }
        if let Some(pids) = limits.max_pids {
            set_limit(self.need("pids", "max_pids")?, "pids.max", &pids.to_string(), "max_pids")?;
        }
        if let Some(millis) = limits.cpu_millis {
            let dir = self.need("cpu", "cpu_millis")?;
            set_limit(dir, "cpu.cfs_period_us", "100000", "cpu_millis")?;
            set_limit(dir, "cpu.cfs_quota_us", &millis.saturating_mul(100).to_string(), "cpu_millis")?;
        }
        if let Some(shares) = limits.cpu_shares {
            set_limit(self.need("cpu", "cpu_shares")?, "cpu.shares", &shares.to_string(), "cpu_shares")?;
        }
        Ok(())
    }

    /// The run directories.
    pub(crate) fn paths(&self) -> Vec<&Path> {
        self.dirs.iter().map(|d| d.dir.run.as_path()).collect()
    }

    /// Move `pid` into every hierarchy used.
    pub(crate) fn add_process(&self, pid: i32) -> Result<(), CgroupError> {
        for d in &self.dirs {
            let path = d.dir.run.join("cgroup.procs");
            write_file(&path, &pid.to_string()).map_err(|errno| CgroupError::AddProcess {
                pid,
                path,
                errno,
            })?;
        }
        Ok(())
    }

    /// The `tasks` file of every hierarchy, open for writing (see `Cgroup::self_join_files`).
    pub(crate) fn self_join_files(&self) -> Result<Vec<std::os::fd::OwnedFd>, CgroupError> {
        self.dirs
            .iter()
            .map(|d| {
                let path = d.dir.run.join("tasks");
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map(std::os::fd::OwnedFd::from)
                    .map_err(|e| CgroupError::AddProcess { pid: 0, path, errno: errno_of(&e) })
            })
            .collect()
    }

    /// Read the counters.
    pub(crate) fn stats(&self) -> CgroupStats {
        read_stats(self.dir_of("memory"), self.dir_of("pids"), self.dir_of("cpuacct"), self.dir_of("blkio"))
    }

    /// Remove the directories; those still busy get the slow path: freeze (when the freezer is in
    /// use) so nothing can fork, SIGKILL everything, thaw, then SIGKILL until every hierarchy is
    /// empty, then rmdir.
    pub(crate) fn destroy(&mut self) -> Result<(), CgroupError> {
        let busy = self.dirs.iter_mut().fold(false, |busy, d| d.dir.remove_if_empty() | busy);
        if !busy {
            return Ok(());
        }
        let (start, kill_deadline, rm_deadline) = teardown_deadlines();
        let runs: Vec<PathBuf> =
            self.dirs.iter().filter(|d| d.dir.present).map(|d| d.dir.run.clone()).collect();
        if runs.is_empty() {
            return Ok(());
        }
        if let Some(fz) = self.dir_of("freezer").filter(|p| p.is_dir()) {
            freeze_and_kill(fz, &runs);
        }
        let refs: Vec<&Path> = runs.iter().map(PathBuf::as_path).collect();
        let mut result = kill_until_empty(&refs, start, kill_deadline);
        for d in &mut self.dirs {
            let removed = d.dir.remove(rm_deadline);
            if result.is_ok() {
                result = removed;
            }
        }
        result
    }
}

/// Freeze the freezer cgroup `fz`, queue SIGKILL for every process in `runs`, thaw. Frozen
/// processes cannot fork, so none escapes the kill; they die as soon as they are thawed.
/// Best effort: the signal loop that follows catches whatever this misses.
fn freeze_and_kill(fz: &Path, runs: &[PathBuf]) {
    let state = fz.join("freezer.state");
    if write_file(&state, "FROZEN").is_err() {
        return;
    }
    let until = Instant::now() + Duration::from_millis(500);
    while Instant::now() < until && read_opt(&state).is_some_and(|s| s.trim() != "FROZEN") {
        std::thread::sleep(Duration::from_millis(5));
    }
    let me = std::process::id() as i32;
    for run in runs {
        for pid in pids_in_tree(run).into_iter().filter(|p| *p != me) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
    let _ = write_file(&state, "THAWED");
}

/// Read the counters from the run directories of the memory, pids, cpuacct and blkio
/// hierarchies (any may be absent).
pub(crate) fn read_stats(
    memory: Option<&Path>,
    pids: Option<&Path>,
    cpuacct: Option<&Path>,
    blkio: Option<&Path>,
) -> CgroupStats {
    let mut s = CgroupStats::default();
    if let Some(m) = memory {
        s.memory_peak_bytes = single_u64(&m.join("memory.max_usage_in_bytes"));
        // `oom_kill` appeared in memory.oom_control with Linux 4.13. Older kernels only have
        // memory.failcnt, the number of times the limit was hit: an upper bound of the kills.
        s.oom_kills = read_opt(&m.join("memory.oom_control"))
            .and_then(|t| keyed_u64(&t, "oom_kill"))
            .or_else(|| single_u64(&m.join("memory.failcnt")))
            .unwrap_or(0);
    }
    if let Some(p) = pids {
        s.pids_max_hits = read_opt(&p.join("pids.events")).and_then(|t| keyed_u64(&t, "max")).unwrap_or(0);
    }
    if let Some(c) = cpuacct {
        s.cpu_user_ns = single_u64(&c.join("cpuacct.usage_user"));
        s.cpu_system_ns = single_u64(&c.join("cpuacct.usage_sys"));
        if s.cpu_user_ns.is_none() || s.cpu_system_ns.is_none() {
            let stat = read_opt(&c.join("cpuacct.stat"));
            let ticks = |k: &str| {
                stat.as_deref().and_then(|t| keyed_u64(t, k)).map(|v| v.saturating_mul(NS_PER_USER_HZ_TICK))
            };
            s.cpu_user_ns = s.cpu_user_ns.or_else(|| ticks("user"));
            s.cpu_system_ns = s.cpu_system_ns.or_else(|| ticks("system"));
        }
    }
    if let Some(b) = blkio {
        let text = read_opt(&b.join("blkio.throttle.io_service_bytes_recursive"))
            .or_else(|| read_opt(&b.join("blkio.throttle.io_service_bytes")));
        if let Some(t) = text {
            let (r, w) = parse_blkio(&t);
            s.io_read_bytes = Some(r);
            s.io_write_bytes = Some(w);
        }
    }
    s
}

/// Sum the `Read` and `Write` lines of a `blkio.throttle.io_service_bytes` text.
pub(crate) fn parse_blkio(text: &str) -> (u64, u64) {
    let (mut r, mut w) = (0u64, 0u64);
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if let [_dev, op, n] = f[..] {
            let n: u64 = n.parse().unwrap_or(0);
            match op {
                "Read" => r = r.saturating_add(n),
                "Write" => w = w.saturating_add(n),
                _ => {}
            }
        }
    }
    (r, w)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::tests::TempDir;

    fn touch(dir: &Path, files: &[(&str, &str)]) {
        for (f, content) in files {
            std::fs::write(dir.join(f), content).unwrap();
        }
    }

    fn fake_dir(t: &TempDir, name: &str, ctrls: &[&str], files: &[(&str, &str)]) -> V1Dir {
        let run = t.path().join(name);
        std::fs::create_dir_all(&run).unwrap();
        touch(&run, files);
        V1Dir {
            controllers: ctrls.iter().map(|c| c.to_string()).collect(),
            // Not marked present: the test's TempDir cleans up.
            dir: RunDir { run, present: false },
        }
    }

    #[test]
    fn limits_are_written_to_the_right_hierarchies() {
        let t = TempDir::new("v1-limits");
        let cg = V1Cgroup {
            dirs: vec![
                fake_dir(
                    &t,
                    "memory",
                    &["memory"],
                    &[("memory.limit_in_bytes", ""), ("memory.memsw.limit_in_bytes", "")],
                ),
                fake_dir(&t, "pids", &["pids"], &[("pids.max", "")]),
                fake_dir(
                    &t,
                    "cpu,cpuacct",
                    &["cpu", "cpuacct"],
                    &[("cpu.cfs_period_us", ""), ("cpu.cfs_quota_us", ""), ("cpu.shares", "")],
                ),
            ],
        };
        let limits = Limits {
            memory_bytes: Some(64 << 20),
            max_pids: Some(16),
            cpu_millis: Some(500),
            cpu_shares: Some(512),
            ..Limits::default()
        };
        cg.apply_limits(&limits, true).unwrap();
        let read = |p: &str| std::fs::read_to_string(t.path().join(p)).unwrap();
        assert_eq!(read("memory/memory.limit_in_bytes"), "67108864");
        assert_eq!(read("memory/memory.memsw.limit_in_bytes"), "67108864");
        assert_eq!(read("pids/pids.max"), "16");
        assert_eq!(read("cpu,cpuacct/cpu.cfs_period_us"), "100000");
        assert_eq!(read("cpu,cpuacct/cpu.cfs_quota_us"), "50000");
        assert_eq!(read("cpu,cpuacct/cpu.shares"), "512");
    }

    #[test]
    fn missing_memsw_fails_closed_with_swap() {
        let t = TempDir::new("v1-memsw");
        let cg =
            V1Cgroup { dirs: vec![fake_dir(&t, "memory", &["memory"], &[("memory.limit_in_bytes", "")])] };
        let limits = Limits { memory_bytes: Some(1 << 20), ..Limits::default() };
        let err = cg.apply_limits(&limits, true).unwrap_err().to_string();
        assert!(err.contains("memory.memsw.limit_in_bytes") && err.contains("memory_bytes"), "{err}");
        cg.apply_limits(&limits, false).unwrap();
    }

    #[test]
    fn limit_without_hierarchy_is_an_error() {
        let cg = V1Cgroup::default();
        let err = cg.apply_limits(&Limits { max_pids: Some(4), ..Limits::default() }, false).unwrap_err();
        assert!(err.to_string().contains("max_pids"), "{err}");
    }

    #[test]
    fn stats_parse() {
        let t = TempDir::new("v1-stats");
        let m = fake_dir(
            &t,
            "memory",
            &["memory"],
            &[
                ("memory.max_usage_in_bytes", "33554432\n"),
                ("memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n"),
                ("memory.failcnt", "999\n"),
            ],
        );
        let p = fake_dir(&t, "pids", &["pids"], &[("pids.events", "max 4\n")]);
        let c = fake_dir(
            &t,
            "cpuacct",
            &["cpuacct"],
            &[("cpuacct.usage_user", "1500\n"), ("cpuacct.usage_sys", "700\n")],
        );
        let b = fake_dir(
            &t,
            "blkio",
            &["blkio"],
            &[(
                "blkio.throttle.io_service_bytes_recursive",
                "8:0 Read 4096\n8:0 Write 512\n8:0 Sync 0\n8:0 Total 4608\nTotal 4608\n",
            )],
        );
        let s = read_stats(Some(&m.dir.run), Some(&p.dir.run), Some(&c.dir.run), Some(&b.dir.run));
        assert_eq!(s.memory_peak_bytes, Some(33_554_432));
        assert_eq!(s.oom_kills, 3);
        assert_eq!(s.pids_max_hits, 4);
        assert_eq!((s.cpu_user_ns, s.cpu_system_ns), (Some(1500), Some(700)));
        assert_eq!((s.io_read_bytes, s.io_write_bytes), (Some(4096), Some(512)));
    }

    #[test]
    fn stats_fallbacks_for_old_kernels() {
        let t = TempDir::new("v1-old");
        let m = fake_dir(
            &t,
            "memory",
            &["memory"],
            &[("memory.oom_control", "oom_kill_disable 0\nunder_oom 0\n"), ("memory.failcnt", "2\n")],
        );
        let c = fake_dir(&t, "cpuacct", &["cpuacct"], &[("cpuacct.stat", "user 12\nsystem 3\n")]);
        let s = read_stats(Some(&m.dir.run), None, Some(&c.dir.run), None);
        assert_eq!(s.oom_kills, 2);
        assert_eq!(s.memory_peak_bytes, None);
        assert_eq!((s.cpu_user_ns, s.cpu_system_ns), (Some(120_000_000), Some(30_000_000)));
        assert_eq!((s.io_read_bytes, s.pids_max_hits), (None, 0));
    }

    #[test]
    fn plan_on_hybrid_text() {
        let t = TempDir::new("v1-plan");
        let mnt = t.path();
        for c in ["memory", "pids", "cpu,cpuacct", "freezer"] {
            std::fs::create_dir_all(mnt.join(c).join("svc")).unwrap();
        }
        let mountinfo = format!(
            "1 0 0:1 / {m}/memory rw - cgroup cgroup rw,memory\n\
             2 0 0:2 / {m}/pids rw - cgroup cgroup rw,pids\n\
             3 0 0:3 / {m}/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n\
             4 0 0:4 / {m}/freezer rw - cgroup cgroup rw,freezer\n",
            m = mnt.display()
        );
        let h = Hierarchies::parse(
            &mountinfo,
            "4:memory:/svc\n3:pids:/svc\n2:cpu,cpuacct:/svc\n1:freezer:/svc\n",
        );
        let p = plan(&h, &["cpu"]).unwrap();
        let bases: Vec<_> =
            p.dirs.iter().map(|d| (d.base.strip_prefix(mnt).unwrap().to_owned(), d.required)).collect();
        assert_eq!(
            bases,
            [
                (PathBuf::from("cpu,cpuacct/svc/airlock"), true),
                (PathBuf::from("memory/svc/airlock"), false),
                (PathBuf::from("pids/svc/airlock"), false),
            ]
        );
        let err = plan(&h, &["cpu", "blkio"]).unwrap_err();
        assert_eq!(err, ["no v1 hierarchy has the blkio controller mounted"]);
    }
}
