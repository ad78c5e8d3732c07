//! Finding the cgroup hierarchies: pure parsing of `/proc/self/mountinfo` and
//! `/proc/self/cgroup`, so that every layout can be tested from sample texts.

use std::path::{Path, PathBuf};

use super::CgroupError;

/// Controllers of v1 hierarchies that this module knows. Super options of a v1 mount that are
/// not in this list (`rw`, `name=systemd`, `xattr`, `clone_children`, ...) are ignored.
const V1_CONTROLLERS: &[&str] = &[
    "blkio",
    "cpu",
    "cpuacct",
    "cpuset",
    "devices",
    "freezer",
    "hugetlb",
    "memory",
    "misc",
    "net_cls",
    "net_prio",
    "perf_event",
    "pids",
    "rdma",
];

/// The cgroup hierarchies visible to this process, and where this process sits in each.
///
/// Built from the texts of `/proc/self/mountinfo` and `/proc/self/cgroup` by
/// [`Hierarchies::parse`], so that any host layout can be reproduced in tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hierarchies {
    /// The unified (v2) hierarchy, when `cgroup2` is mounted.
    pub v2: Option<V2Hierarchy>,
    /// The v1 hierarchies that carry at least one controller, in mount order.
    pub v1: Vec<V1Hierarchy>,
}

/// The mounted unified hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V2Hierarchy {
    /// Where `cgroup2` is mounted.
    pub mount_point: PathBuf,
    /// The caller's cgroup path (from the `0::` line of `/proc/self/cgroup`).
    pub own_path: Option<String>,
    /// The directory of the caller's cgroup, when it lies inside the mounted subtree.
    pub own_dir: Option<PathBuf>,
}

/// One mounted v1 hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1Hierarchy {
    /// The controllers attached to it (more than one when co-mounted, e.g. `cpu,cpuacct`).
    pub controllers: Vec<String>,
    /// Where it is mounted.
    pub mount_point: PathBuf,
    /// The caller's cgroup path in this hierarchy (from `/proc/self/cgroup`).
    pub own_path: Option<String>,
    /// The directory of the caller's cgroup, when it lies inside the mounted subtree.
    pub own_dir: Option<PathBuf>,
}

impl V1Hierarchy {
    /// Whether `controller` is attached to this hierarchy.
    pub fn has(&self, controller: &str) -> bool {
        self.controllers.iter().any(|c| c == controller)
    }
}

impl Hierarchies {
    /// Read `/proc/self/mountinfo` and `/proc/self/cgroup` and parse them.
    pub fn discover() -> Result<Hierarchies, CgroupError> {
        let mountinfo = read_proc("/proc/self/mountinfo")?;
        let cgroup = read_proc("/proc/self/cgroup")?;
        Ok(Hierarchies::parse(&mountinfo, &cgroup))
    }

    /// Build the view from the texts of `/proc/self/mountinfo` and `/proc/self/cgroup`.
    /// The first mount of each hierarchy wins; bind mounts of the same hierarchy are ignored.
    pub fn parse(mountinfo: &str, proc_cgroup: &str) -> Hierarchies {
        let memberships = parse_proc_cgroup(proc_cgroup);
        let mut out = Hierarchies::default();
        for m in parse_mountinfo(mountinfo) {
            if m.v2 {
                if out.v2.is_some() {
                    continue;
                }
                let own_path = memberships
                    .iter()
                    .find(|(id, ctrls, _)| *id == 0 && ctrls.is_empty())
                    .map(|(_, _, p)| p.clone());
                let own_dir = own_path.as_deref().and_then(|p| join_own(&m.mount_point, &m.root, p));
                out.v2 = Some(V2Hierarchy { mount_point: m.mount_point, own_path, own_dir });
            } else {
                if m.controllers.is_empty() || out.v1.iter().any(|h| h.controllers == m.controllers) {
                    continue;
                }
                let own_path = memberships
                    .iter()
                    .find(|(id, ctrls, _)| *id != 0 && same_set(ctrls, &m.controllers))
                    .map(|(_, _, p)| p.clone());
                let own_dir = own_path.as_deref().and_then(|p| join_own(&m.mount_point, &m.root, p));
                out.v1.push(V1Hierarchy {
                    controllers: m.controllers,
                    mount_point: m.mount_point,
                    own_path,
                    own_dir,
                });
            }
        }
        out
    }

    /// The v1 hierarchy carrying `controller`, if mounted.
    pub fn v1_for(&self, controller: &str) -> Option<&V1Hierarchy> {
        self.v1.iter().find(|h| h.has(controller))
    }
}

fn read_proc(path: &str) -> Result<String, CgroupError> {
    crate::kernel_file::read(path)
        .map_err(|e| CgroupError::Read { path: PathBuf::from(path), errno: super::errno_of(&e) })
}

/// One cgroup mount from mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CgroupMount {
    /// `cgroup2` (true) or `cgroup` (false).
    pub v2: bool,
    /// Path of the hierarchy that is mounted (field 4), `/` unless a subtree is mounted.
    pub root: String,
    /// Mount point (field 5).
    pub mount_point: PathBuf,
    /// v1 controllers from the super options, sorted; empty for v2.
    pub controllers: Vec<String>,
}

/// Parse the cgroup and cgroup2 mounts out of a mountinfo text.
pub(crate) fn parse_mountinfo(text: &str) -> Vec<CgroupMount> {
    let mut out = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let Some(sep) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        if sep < 6 || fields.len() < sep + 3 {
            continue;
        }
        let fstype = fields[sep + 1];
        let v2 = match fstype {
            "cgroup2" => true,
            "cgroup" => false,
            _ => continue,
        };
        let mut controllers: Vec<String> = if v2 {
            Vec::new()
        } else {
            fields[sep + 3].split(',').filter(|o| V1_CONTROLLERS.contains(o)).map(str::to_owned).collect()
        };
        controllers.sort();
        out.push(CgroupMount {
            v2,
            root: unescape(fields[3]),
            mount_point: PathBuf::from(unescape(fields[4])),
            controllers,
        });
    }
    out
}

/// Parse `/proc/self/cgroup`: `(hierarchy id, controllers, path)` per line. Named hierarchies
/// (`name=systemd`) keep their name as the only "controller".
pub(crate) fn parse_proc_cgroup(text: &str) -> Vec<(u32, Vec<String>, String)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let Ok(id) = id.parse::<u32>() else {
            continue;
        };
        let mut ctrls: Vec<String> = ctrls.split(',').filter(|c| !c.is_empty()).map(str::to_owned).collect();
        ctrls.sort();
        out.push((id, ctrls, path.to_owned()));
    }
    out
}

/// Whether a `/proc/self/cgroup` controller list names the same hierarchy as a mount's
/// controllers (both sorted by the parsers; names like `name=foo` are ignored).
fn same_set(line: &[String], mount: &[String]) -> bool {
    line.iter().filter(|c| V1_CONTROLLERS.contains(&c.as_str())).eq(mount.iter())
}

/// The directory of cgroup `own` (a path from `/proc/self/cgroup`) in a hierarchy whose subtree
/// `root` is mounted at `mount_point`; `None` when `own` is outside that subtree.
pub(crate) fn join_own(mount_point: &Path, root: &str, own: &str) -> Option<PathBuf> {
    let root = root.trim_end_matches('/');
    let rel = own.strip_prefix(root)?;
    if !(rel.is_empty() || rel.starts_with('/')) {
        return None;
    }
    let rel = rel.trim_start_matches('/');
    if rel.split('/').any(|c| c == "..") {
        return None;
    }
    Some(if rel.is_empty() { mount_point.to_path_buf() } else { mount_point.join(rel) })
}

/// Undo mountinfo's octal escapes (`\040` for a space, etc.).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            let v = b[i + 1..i + 4].iter().fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0'));
            if let Ok(v) = u8::try_from(v) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether the host has swap, from sysinfo(2). A failed call counts as "yes", so that a
/// missing swap-limit file fails closed.
pub(crate) fn host_has_swap() -> bool {
    nix::sys::sysinfo::sysinfo().map_or(true, |info| info.swap_total() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID_MOUNTINFO: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const HYBRID_CGROUP: &str = "\
9:name=systemd:/
8:pids:/
7:blkio:/
6:freezer:/
5:devices:/
4:memory:/process_api/ad4fab8d95d62e3951e9c82387a5d463
3:cpuset:/
2:cpuacct:/
1:cpu:/
0::/
";

    #[test]
    fn hybrid_layout() {
        let h = Hierarchies::parse(HYBRID_MOUNTINFO, HYBRID_CGROUP);
        let v2 = h.v2.as_ref().expect("cgroup2 mount");
        assert_eq!(v2.mount_point, Path::new("/sys/fs/cgroup/unified"));
        assert_eq!(v2.own_path.as_deref(), Some("/"));
        assert_eq!(v2.own_dir.as_deref(), Some(Path::new("/sys/fs/cgroup/unified")));
        // name=systemd carries no controller and is skipped.
        assert_eq!(h.v1.len(), 8);
        let mem = h.v1_for("memory").unwrap();
        assert_eq!(mem.controllers, ["memory"]);
        assert_eq!(
            mem.own_dir.as_deref(),
            Some(Path::new("/sys/fs/cgroup/memory/process_api/ad4fab8d95d62e3951e9c82387a5d463"))
        );
        assert_eq!(h.v1_for("pids").unwrap().own_dir.as_deref(), Some(Path::new("/sys/fs/cgroup/pids")));
        assert_ne!(h.v1_for("cpu").unwrap().mount_point, h.v1_for("cpuacct").unwrap().mount_point);
        assert!(h.v1_for("io").is_none());
    }

    #[test]
    fn pure_v2_layout() {
        let mountinfo = "\
24 30 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
25 24 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";
        let cgroup = "0::/user.slice/user-1000.slice/user@1000.service/app.slice/term.scope\n";
        let h = Hierarchies::parse(mountinfo, cgroup);
        assert!(h.v1.is_empty());
        let v2 = h.v2.unwrap();
        assert_eq!(v2.mount_point, Path::new("/sys/fs/cgroup"));
        assert_eq!(
            v2.own_dir.unwrap(),
            Path::new("/sys/fs/cgroup/user.slice/user-1000.slice/user@1000.service/app.slice/term.scope")
        );
    }

    #[test]
    fn comounted_cpu_cpuacct() {
        let mountinfo = "\
25 18 0:21 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:22 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
27 25 0:23 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd
30 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,cpu,cpuacct
31 25 0:27 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,memory
32 25 0:28 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,pids
33 25 0:29 / /sys/fs/cgroup/net_cls,net_prio rw,nosuid,nodev,noexec,relatime shared:17 - cgroup cgroup rw,net_cls,net_prio
";
        let cgroup = "\
12:pids:/system.slice/ci.service
11:net_cls,net_prio:/
4:memory:/system.slice/ci.service
3:cpu,cpuacct:/system.slice/ci.service
1:name=systemd:/system.slice/ci.service
0::/system.slice/ci.service
";
        let h = Hierarchies::parse(mountinfo, cgroup);
        let cpu = h.v1_for("cpu").unwrap();
        assert_eq!(cpu.controllers, ["cpu", "cpuacct"]);
        assert!(std::ptr::eq(cpu, h.v1_for("cpuacct").unwrap()));
        assert_eq!(
            cpu.own_dir.as_deref(),
            Some(Path::new("/sys/fs/cgroup/cpu,cpuacct/system.slice/ci.service"))
        );
        assert_eq!(h.v1_for("net_prio").unwrap().own_path.as_deref(), Some("/"));
        assert_eq!(h.v1.len(), 4);
    }

    #[test]
    fn subtree_mounts_and_escapes() {
        // A container that sees only its own subtree, mounted at a path with a space.
        let mountinfo = "\
40 30 0:29 /docker/abc /sys/fs/cgroup/my\\040mem rw - cgroup cgroup rw,memory
41 30 0:30 /docker/abc /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids
";
        let cgroup = "5:memory:/docker/abc/inner\n6:pids:/elsewhere\n";
        let h = Hierarchies::parse(mountinfo, cgroup);
        assert_eq!(
            h.v1_for("memory").unwrap().own_dir.as_deref(),
            Some(Path::new("/sys/fs/cgroup/my mem/inner"))
        );
        assert_eq!(h.v1_for("pids").unwrap().own_dir, None);
        assert_eq!(join_own(Path::new("/m"), "/a", "/ab"), None);
        assert_eq!(join_own(Path::new("/m"), "/a/", "/a"), Some(PathBuf::from("/m")));
        assert_eq!(join_own(Path::new("/m"), "/", "/x/y"), Some(PathBuf::from("/m/x/y")));
    }
}
