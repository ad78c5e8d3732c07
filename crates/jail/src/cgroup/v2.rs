//! The unified (v2) hierarchy: placement, limits, statistics and teardown of one run cgroup.

use std::path::{Path, PathBuf};

use super::fsops::{
    can_create_in, keyed_u64, kill_until_empty, make_run_dir, read_opt, set_limit, single_u64,
    teardown_deadlines, write_file, RunDir,
};
use super::{CgroupError, CgroupStats, Hierarchies, VersionProbe, BASE_DIR_NAME};
use crate::spec::Limits;

/// Controllers joined when available, for statistics, even if no limit needs them.
const OPTIONAL: &[&str] = &["memory", "pids", "io"];

/// Where a v2 run cgroup goes and which controllers it gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct V2Plan {
    /// The cgroup whose `cgroup.subtree_control` hands the controllers to `base`.
    pub parent: PathBuf,
    /// `<parent>/airlock`; run cgroups are `<base>/<name>`.
    pub base: PathBuf,
    /// Controllers listed in the parent's `cgroup.controllers`.
    pub available: Vec<String>,
    /// Controllers the run cgroup gets: the required ones plus the available optional ones.
    pub controllers: Vec<String>,
    /// The subset of `controllers` that the limits need.
    pub required: Vec<String>,
}

fn words(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_owned).collect()
}

/// Decide the placement: `<mount>/airlock` for uid 0 when the root cgroup offers the
/// controllers, else `<caller's cgroup>/airlock` when that cgroup delegates them. The error
/// lists why each candidate was rejected.
pub(crate) fn plan(h: &Hierarchies, required: &[&str], euid_root: bool) -> Result<V2Plan, Vec<String>> {
    let Some(v2) = &h.v2 else {
        return Err(vec!["cgroup2 is not mounted (no cgroup2 line in /proc/self/mountinfo)".to_owned()]);
    };
    let mut reasons = Vec::new();
    let mut candidates = Vec::new();
    if euid_root {
        candidates.push(v2.mount_point.clone());
    } else {
        reasons.push(format!(
            "{} (the root cgroup) is used only when running as uid 0",
            v2.mount_point.display()
        ));
    }
    match &v2.own_dir {
        Some(d) if !candidates.contains(d) => candidates.push(d.clone()),
        Some(_) => {}
        None => reasons.push(format!(
            "the caller's cgroup {:?} is not visible under the cgroup2 mount {}",
            v2.own_path.as_deref().unwrap_or("(unknown)"),
            v2.mount_point.display()
        )),
    }
    for parent in candidates {
        match check_parent(&parent, required) {
            Ok(p) => return Ok(p),
            Err(r) => reasons.push(r),
        }
    }
    Err(reasons)
}

/// Whether `parent` can hand `required` to a child cgroup: they must be in its
/// `cgroup.controllers`, and either already in its `cgroup.subtree_control` or enableable there
/// (it is the real root, or it has no member processes).
pub(crate) fn check_parent(parent: &Path, required: &[&str]) -> Result<V2Plan, String> {
    let ctrl_file = parent.join("cgroup.controllers");
    let available = match crate::kernel_file::read(&ctrl_file) {
        Ok(t) => words(&t),
        Err(e) => {
            return Err(format!(
                "cannot read {}: {}",
                ctrl_file.display(),
                super::errno_text(super::errno_of(&e))
            ))
        }
    };
    let missing: Vec<&str> = required.iter().copied().filter(|c| !available.iter().any(|a| a == c)).collect();
    if !missing.is_empty() {
        return Err(format!(
            "{} lacks {} (it offers: {})",
            ctrl_file.display(),
            missing.join(" "),
            if available.is_empty() { "nothing".to_owned() } else { available.join(" ") }
        ));
    }
    let sub_file = parent.join("cgroup.subtree_control");
    let subtree = words(&read_opt(&sub_file).unwrap_or_default());
    // Only the real root has no cgroup.type; it is exempt from the no-internal-processes rule.
    let is_root = !parent.join("cgroup.type").exists();
    let has_procs = read_opt(&parent.join("cgroup.procs")).is_some_and(|t| !t.trim().is_empty());
    let may_enable = is_root || !has_procs;
    if !may_enable {
        let not_delegated: Vec<&str> =
            required.iter().copied().filter(|c| !subtree.iter().any(|s| s == c)).collect();
        if !not_delegated.is_empty() {
            return Err(format!(
                "{} has member processes, so {} cannot be enabled in {} (no internal processes rule)",
                parent.display(),
                not_delegated.join(" "),
                sub_file.display()
            ));
        }
    }
    let usable = |c: &str| {
        if may_enable {
            available.iter().any(|a| a == c)
        } else {
            subtree.iter().any(|s| s == c)
        }
    };
    let mut controllers: Vec<String> = required.iter().map(|c| c.to_string()).collect();
    for c in OPTIONAL.iter().copied().filter(|c| usable(c)) {
        if !controllers.iter().any(|x| x == c) {
            controllers.push(c.to_string());
        }
    }
    Ok(V2Plan {
        parent: parent.to_owned(),
        base: parent.join(BASE_DIR_NAME),
        available,
        controllers,
        required: required.iter().map(|c| c.to_string()).collect(),
    })
}

/// The doctor's view of v2.
pub(crate) fn probe(h: &Hierarchies, plan: &Result<V2Plan, Vec<String>>) -> VersionProbe {
    let Some(v2) = &h.v2 else {
        return VersionProbe {
            reasons: plan.as_ref().err().cloned().unwrap_or_default(),
            ..VersionProbe::default()
        };
    };
    match plan {
        Ok(p) => VersionProbe {
            mounted: true,
            usable: true,
            controllers: p.available.clone(),
            bases: vec![p.base.clone()],
            writable: Some(can_create_in(&p.base)),
            reasons: Vec::new(),
        },
        Err(r) => VersionProbe {
            mounted: true,
            usable: false,
            controllers: words(&read_opt(&v2.mount_point.join("cgroup.controllers")).unwrap_or_default()),
            bases: Vec::new(),
            writable: None,
            reasons: r.clone(),
        },
    }
}

/// cgroup v1 `cpu.shares` (2..=262144, 1024 normal) to v2 `cpu.weight` (1..=10000, 100 normal).
pub(crate) fn cpu_weight(shares: u64) -> u64 {
    let shares = shares.clamp(2, 262_144);
    (1 + ((shares - 2) * 9999) / 262_142).clamp(1, 10_000)
}

/// Write the limits that are set into the run cgroup `dir`.
pub(crate) fn apply_limits(dir: &Path, limits: &Limits, host_has_swap: bool) -> Result<(), CgroupError> {
    if let Some(bytes) = limits.memory_bytes {
        set_limit(dir, "memory.max", &bytes.to_string(), "memory_bytes")?;
        let swap = dir.join("memory.swap.max");
        if swap.exists() {
            set_limit(dir, "memory.swap.max", "0", "memory_bytes")?;
        } else if host_has_swap {
            return Err(CgroupError::Unenforceable {
                limit: "memory_bytes",
                path: swap,
                reason:
                    "is missing (no swap accounting) and the host has swap, so swap use would be unlimited",
            });
        }
    }
    if let Some(pids) = limits.max_pids {
        set_limit(dir, "pids.max", &pids.to_string(), "max_pids")?;
    }
    if let Some(millis) = limits.cpu_millis {
        let quota = millis.saturating_mul(100);
        set_limit(dir, "cpu.max", &format!("{quota} 100000"), "cpu_millis")?;
    }
    if let Some(shares) = limits.cpu_shares {
        set_limit(dir, "cpu.weight", &cpu_weight(shares).to_string(), "cpu_shares")?;
    }
    Ok(())
}

/// Read the statistics of the run cgroup `dir`.
pub(crate) fn read_stats(dir: &Path) -> CgroupStats {
    let events = |file: &str, key: &str| read_opt(&dir.join(file)).and_then(|t| keyed_u64(&t, key));
    let cpu = read_opt(&dir.join("cpu.stat"));
    let usec = |key: &str| cpu.as_deref().and_then(|t| keyed_u64(t, key)).map(|u| u.saturating_mul(1000));
    let (io_read_bytes, io_write_bytes) = match read_opt(&dir.join("io.stat")) {
        Some(t) => {
            let (r, w) = parse_io_stat(&t);
            (Some(r), Some(w))
        }
        None => (None, None),
    };
    CgroupStats {
        memory_peak_bytes: single_u64(&dir.join("memory.peak")),
        oom_kills: events("memory.events", "oom_kill").unwrap_or(0),
        pids_max_hits: events("pids.events", "max").unwrap_or(0),
        cpu_user_ns: usec("user_usec"),
        cpu_system_ns: usec("system_usec"),
        io_read_bytes,
        io_write_bytes,
    }
}

/// Sum `rbytes=` and `wbytes=` over the devices of an `io.stat` text.
pub(crate) fn parse_io_stat(text: &str) -> (u64, u64) {
    let (mut r, mut w) = (0u64, 0u64);
    for field in text.split_whitespace() {
        if let Some(v) = field.strip_prefix("rbytes=").and_then(|v| v.parse::<u64>().ok()) {
            r = r.saturating_add(v);
        } else if let Some(v) = field.strip_prefix("wbytes=").and_then(|v| v.parse::<u64>().ok()) {
            w = w.saturating_add(v);
        }
    }
    (r, w)
}

/// One run's v2 cgroup.
#[derive(Debug)]
pub(crate) struct V2Cgroup {
    dir: RunDir,
    /// Controllers enabled for it.
    pub controllers: Vec<String>,
}

impl V2Cgroup {
    /// Enable the controllers down to `<base>`, create `<base>/<name>`, apply `limits`.
    pub(crate) fn create(
        plan: &V2Plan,
        name: &str,
        limits: &Limits,
        host_has_swap: bool,
    ) -> Result<V2Cgroup, CgroupError> {
        let is_required = |c: &str| plan.required.iter().any(|r| r == c);
        // Hand the controllers from the parent to the base (only when not delegated already).
        let parent_sub = plan.parent.join("cgroup.subtree_control");
        let current = words(&read_opt(&parent_sub).unwrap_or_default());
        let mut controllers = Vec::new();
        for c in &plan.controllers {
            if current.contains(c) {
                controllers.push(c.clone());
                continue;
            }
            match enable(&parent_sub, c) {
                Ok(()) => controllers.push(c.clone()),
                Err(e) if is_required(c) => return Err(e),
                Err(_) => {}
            }
        }
        // And from the base to the run cgroup.
        let mut enabled = Vec::new();
        let dir = make_run_dir(&plan.base, name, |base| {
            enabled.clear();
            let sub = base.join("cgroup.subtree_control");
            for c in &controllers {
                match enable(&sub, c) {
                    Ok(()) => enabled.push(c.clone()),
                    Err(e) if is_required(c) => return Err(e),
                    Err(_) => {}
                }
            }
            Ok(())
        })?;
        let mut cg = V2Cgroup { dir, controllers: enabled };
        if let Err(e) = apply_limits(&cg.dir.run, limits, host_has_swap) {
            let _ = cg.destroy();
            return Err(e);
        }
        Ok(cg)
    }

    /// The run cgroup's directory.
    pub(crate) fn path(&self) -> &Path {
        &self.dir.run
    }

    /// Move `pid` in.
    pub(crate) fn add_process(&self, pid: i32) -> Result<(), CgroupError> {
        let path = self.dir.run.join("cgroup.procs");
        write_file(&path, &pid.to_string()).map_err(|errno| CgroupError::AddProcess { pid, path, errno })
    }

    /// Read the counters.
    pub(crate) fn stats(&self) -> CgroupStats {
        read_stats(&self.dir.run)
    }

    /// `cgroup.kill` when the kernel has it (5.14+), then SIGKILL whatever is still listed until
    /// the cgroup is empty, then rmdir.
    pub(crate) fn destroy(&mut self) -> Result<(), CgroupError> {
        if !self.dir.remove_if_empty() {
            return Ok(());
        }
        let (start, kill_deadline, rm_deadline) = teardown_deadlines();
        let run = self.dir.run.clone();
        let kill_file = run.join("cgroup.kill");
        if kill_file.exists() {
            // On failure the signal loop below does the work.
            let _ = write_file(&kill_file, "1");
        }
        let killed = kill_until_empty(&[&run], start, kill_deadline);
        let removed = self.dir.remove(rm_deadline);
        killed.and(removed)
    }
}

fn enable(subtree_control: &Path, controller: &str) -> Result<(), CgroupError> {
    let value = format!("+{controller}");
    write_file(subtree_control, &value).map_err(|errno| CgroupError::Write {
        path: subtree_control.to_owned(),
        value,
        errno,
    })
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

    fn read(dir: &Path, f: &str) -> String {
        std::fs::read_to_string(dir.join(f)).unwrap()
    }

    const LIMIT_FILES: &[(&str, &str)] = &[
        ("memory.max", "max\n"),
        ("memory.swap.max", "max\n"),
        ("pids.max", "max\n"),
        ("cpu.max", "max 100000\n"),
        ("cpu.weight", "100\n"),
    ];

    #[test]
    fn limits_are_written() {
        let t = TempDir::new("v2-limits");
        touch(t.path(), LIMIT_FILES);
        let limits = Limits {
            memory_bytes: Some(64 << 20),
            max_pids: Some(16),
            cpu_millis: Some(500),
            cpu_shares: Some(1024),
            ..Limits::default()
        };
        apply_limits(t.path(), &limits, true).unwrap();
        assert_eq!(read(t.path(), "memory.max"), "67108864");
        assert_eq!(read(t.path(), "memory.swap.max"), "0");
        assert_eq!(read(t.path(), "pids.max"), "16");
        assert_eq!(read(t.path(), "cpu.max"), "50000 100000");
        assert_eq!(read(t.path(), "cpu.weight"), "39");
    }

    #[test]
    fn unset_limits_are_not_touched() {
        let t = TempDir::new("v2-unset");
        touch(t.path(), LIMIT_FILES);
        apply_limits(t.path(), &Limits { max_pids: Some(3), ..Limits::default() }, true).unwrap();
        assert_eq!(read(t.path(), "memory.max"), "max\n");
        assert_eq!(read(t.path(), "cpu.max"), "max 100000\n");
        assert_eq!(read(t.path(), "pids.max"), "3");
    }

    #[test]
    fn missing_swap_file_fails_closed_only_with_swap() {
        let t = TempDir::new("v2-swap");
        touch(t.path(), &[("memory.max", "max\n")]);
        let limits = Limits { memory_bytes: Some(1 << 20), ..Limits::default() };
        let err = apply_limits(t.path(), &limits, true).unwrap_err();
        assert!(matches!(err, CgroupError::Unenforceable { limit: "memory_bytes", .. }), "{err}");
        assert!(err.to_string().contains("memory.swap.max"), "{err}");
        apply_limits(t.path(), &limits, false).unwrap();
        assert_eq!(read(t.path(), "memory.max"), "1048576");
    }

    #[test]
    fn missing_controller_file_names_the_limit() {
        let t = TempDir::new("v2-missing");
        let err = apply_limits(t.path(), &Limits { cpu_millis: Some(250), ..Limits::default() }, false)
            .unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, CgroupError::Limit { limit: "cpu_millis", .. }), "{msg}");
        assert!(msg.contains("cpu.max") && msg.contains("ENOENT"), "{msg}");
        assert_eq!(msg, msg.to_lowercase().replace("enoent", "ENOENT"));
    }

    #[test]
    fn weight_conversion() {
        assert_eq!(cpu_weight(2), 1);
        assert_eq!(cpu_weight(0), 1);
        assert_eq!(cpu_weight(1024), 39);
        assert_eq!(cpu_weight(262_144), 10_000);
        assert_eq!(cpu_weight(u64::MAX), 10_000);
    }

    #[test]
    fn stats_parse() {
        let t = TempDir::new("v2-stats");
        touch(
            t.path(),
            &[
                ("memory.peak", "52428800\n"),
                ("memory.events", "low 0\nhigh 0\nmax 12\noom 2\noom_kill 2\noom_group_kill 0\n"),
                ("pids.events", "max 7\n"),
                (
                    "cpu.stat",
                    "usage_usec 30000\nuser_usec 20000\nsystem_usec 10000\nnr_periods 4\nnr_throttled 1\nthrottled_usec 900\n",
                ),
                (
                    "io.stat",
                    "8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n253:1 rbytes=100 wbytes=0 rios=1 wios=0 dbytes=0 dios=0\n",
                ),
            ],
        );
        let s = read_stats(t.path());
        assert_eq!(s.memory_peak_bytes, Some(52_428_800));
        assert_eq!(s.oom_kills, 2);
        assert_eq!(s.pids_max_hits, 7);
        assert_eq!(s.cpu_user_ns, Some(20_000_000));
        assert_eq!(s.cpu_system_ns, Some(10_000_000));
        assert_eq!(s.io_read_bytes, Some(4196));
        assert_eq!(s.io_write_bytes, Some(8192));
    }

    #[test]
    fn stats_of_bare_cgroup() {
        let t = TempDir::new("v2-bare");
        touch(t.path(), &[("cpu.stat", "usage_usec 5\nuser_usec 3\nsystem_usec 2\n"), ("io.stat", "")]);
        let s = read_stats(t.path());
        assert_eq!(s.memory_peak_bytes, None);
        assert_eq!((s.oom_kills, s.pids_max_hits), (0, 0));
        assert_eq!(s.cpu_user_ns, Some(3000));
        assert_eq!((s.io_read_bytes, s.io_write_bytes), (Some(0), Some(0)));
    }

    fn fake_v2(t: &TempDir, root_ctrls: &str) -> (PathBuf, PathBuf) {
        let root = t.path().join("mnt");
        let own = root.join("user.slice/session.scope");
        std::fs::create_dir_all(&own).unwrap();
        touch(
            &root,
            &[("cgroup.controllers", root_ctrls), ("cgroup.subtree_control", ""), ("cgroup.procs", "1\n")],
        );
        touch(
            &own,
            &[
                ("cgroup.controllers", "memory pids\n"),
                ("cgroup.subtree_control", ""),
                ("cgroup.procs", "4242\n"),
                ("cgroup.type", "domain\n"),
            ],
        );
        (root, own)
    }

    fn hier(root: &Path, own: &Path) -> Hierarchies {
        Hierarchies {
            v2: Some(crate::cgroup::V2Hierarchy {
                mount_point: root.to_owned(),
                own_path: Some("/user.slice/session.scope".into()),
                own_dir: Some(own.to_owned()),
            }),
            v1: Vec::new(),
        }
    }

    #[test]
    fn placement_at_mount_for_uid0() {
        let t = TempDir::new("v2-place-root");
        let (root, own) = fake_v2(&t, "cpuset cpu io memory hugetlb pids rdma\n");
        let p = plan(&hier(&root, &own), &["memory", "pids", "cpu"], true).unwrap();
        assert_eq!(p.base, root.join("airlock"));
        assert_eq!(p.controllers, ["memory", "pids", "cpu", "io"]);
    }

    #[test]
    fn placement_refuses_busy_cgroup_without_delegation() {
        let t = TempDir::new("v2-place-busy");
        let (root, own) = fake_v2(&t, "cpu io memory pids\n");
        let err = plan(&hier(&root, &own), &["memory"], false).unwrap_err();
        let all = err.join("; ");
        assert!(all.contains("no internal processes"), "{all}");
        assert!(all.contains("uid 0"), "{all}");
    }

    #[test]
    fn placement_uses_delegated_cgroup() {
        let t = TempDir::new("v2-place-deleg");
        let (root, own) = fake_v2(&t, "cpu io memory pids\n");
        touch(&own, &[("cgroup.subtree_control", "memory pids\n")]);
        let p = plan(&hier(&root, &own), &["memory"], false).unwrap();
        assert_eq!(p.base, own.join("airlock"));
        assert_eq!(p.controllers, ["memory", "pids"]);
        // cpu is not delegated: a cpu limit cannot be enforced there.
        let err = plan(&hier(&root, &own), &["cpu"], false).unwrap_err().join("; ");
        assert!(err.contains("lacks cpu"), "{err}");
    }

    #[test]
    fn placement_hybrid_unified_has_no_controllers() {
        let t = TempDir::new("v2-place-hybrid");
        let (root, own) = fake_v2(&t, "hugetlb\n");
        let err = plan(&hier(&root, &own), &["memory", "pids"], true).unwrap_err().join("; ");
        assert!(err.contains("lacks memory pids (it offers: hugetlb)"), "{err}");
        // No limit at all: the unified hierarchy is still usable for kill and cpu.stat.
        let p = plan(&hier(&root, &own), &[], true).unwrap();
        assert!(p.controllers.is_empty());
    }
}
