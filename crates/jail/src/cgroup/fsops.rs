//! Filesystem operations shared by v1 and v2: control-file I/O, run directories and their
//! removal, and the kill loop. Everything works on plain paths, so tests can point it at a
//! fake tree in a temporary directory.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::{errno_of, CgroupError};

/// How long [`super::Cgroup::destroy`] keeps killing before it gives up on a cgroup that is not
/// empty.
const KILL_TIMEOUT: Duration = Duration::from_secs(2);
/// Extra time granted to `rmdir` of an emptied cgroup (the kernel may still be tearing it down).
const RMDIR_GRACE: Duration = Duration::from_secs(1);
/// Pause between two rounds of killing or polling.
const POLL: Duration = Duration::from_millis(10);

/// Write `value` to an existing control file in a single write (never creates the file).
pub(crate) fn write_file(path: &Path, value: &str) -> Result<(), Errno> {
    let mut f =
        std::fs::OpenOptions::new().write(true).truncate(true).open(path).map_err(|e| errno_of(&e))?;
    f.write_all(value.as_bytes()).map_err(|e| errno_of(&e))
}

/// Read a control file; `None` when missing or unreadable.
pub(crate) fn read_opt(path: &Path) -> Option<String> {
    crate::kernel_file::read(path).ok()
}

/// The number after `key` in a "key value" per line file (`memory.events`, `cpu.stat`, ...).
pub(crate) fn keyed_u64(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        (it.next() == Some(key)).then(|| it.next()?.parse().ok())?
    })
}

/// A file holding one number.
pub(crate) fn single_u64(path: &Path) -> Option<u64> {
    read_opt(path)?.trim().parse().ok()
}

/// Create a directory; `Ok(true)` when created, `Ok(false)` when it already existed.
pub(crate) fn mkdir(path: &Path) -> Result<bool, Errno> {
    match std::fs::create_dir(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(errno_of(&e)),
    }
}

/// One run's directory in one hierarchy.
#[derive(Debug)]
pub(crate) struct RunDir {
    /// `<base>/<name>`.
    pub run: PathBuf,
    /// Whether the run directory is still there to remove.
    pub present: bool,
}

/// Create `<base>` (if missing; it stays, as a shared parent like systemd's slices) and
/// `<base>/<name>` (must not exist). `prepare_base` runs on the base each time (v2 enables
/// controllers there). Empty run directories left by supervisors that were killed are removed
/// on the way.
pub(crate) fn make_run_dir(
    base: &Path,
    name: &str,
    prepare_base: impl FnOnce(&Path) -> Result<(), CgroupError>,
) -> Result<RunDir, CgroupError> {
    let run = base.join(name);
    if !mkdir(base).map_err(|errno| CgroupError::Create { path: base.to_owned(), errno })? {
        remove_stale_runs(base);
    }
    prepare_base(base)?;
    std::fs::create_dir(&run).map_err(|e| CgroupError::Create { path: run.clone(), errno: errno_of(&e) })?;
    Ok(RunDir { run, present: true })
}

/// Remove `run-<pid>-<n>` directories whose supervisor no longer exists. Only empty cgroups can
/// be removed, so a run that is still alive (its pid reused or not) is never disturbed.
fn remove_stale_runs(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let pid = name.to_str().and_then(|n| n.strip_prefix("run-")).and_then(|n| n.split('-').next());
        let Some(pid) = pid.and_then(|p| p.parse::<u32>().ok()) else { continue };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir(entry.path());
        }
    }
}

impl RunDir {
    /// Remove the run directory if nothing is left in it: the common case once the sandbox's
    /// pid namespace has ended, which kills and reaps all of it. Returns whether it is still
    /// there (busy, or holding cgroups of its own) for the kill-and-retry path.
    pub(crate) fn remove_if_empty(&mut self) -> bool {
        if self.present {
            match std::fs::remove_dir(&self.run) {
                Ok(()) => self.present = false,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => self.present = false,
                Err(_) => {}
            }
        }
        self.present
    }

    /// Remove the run directory (and any cgroup the payload made below it), retrying while the
    /// kernel reports it busy until `deadline`.
    pub(crate) fn remove(&mut self, deadline: Instant) -> Result<(), CgroupError> {
        if !self.present {
            return Ok(());
        }
        rmdir_tree(&self.run, deadline)
            .map_err(|errno| CgroupError::Remove { path: self.run.clone(), errno })?;
        self.present = false;
        Ok(())
    }
}

/// Pids listed in `cgroup.procs` of `dir` and of every cgroup below it.
pub(crate) fn pids_in_tree(dir: &Path) -> Vec<i32> {
    let mut out = Vec::new();
    if let Some(text) = read_opt(&dir.join("cgroup.procs")) {
        out.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()).filter(|p| *p > 0));
    }
    for sub in subdirs(dir) {
        out.extend(pids_in_tree(&sub));
    }
    out
}

fn subdirs(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    rd.filter_map(Result::ok).filter(|e| e.file_type().is_ok_and(|t| t.is_dir())).map(|e| e.path()).collect()
}

/// SIGKILL every process in the trees of `dirs`, over and over, until they are all empty or
/// `deadline` passes. Never signals the calling process itself.
pub(crate) fn kill_until_empty(
    dirs: &[&Path],
    started: Instant,
    deadline: Instant,
) -> Result<(), CgroupError> {
    let me = std::process::id() as i32;
    let mut first_err = None;
    loop {
        let mut left = None;
        for dir in dirs {
            let pids: Vec<i32> = pids_in_tree(dir).into_iter().filter(|p| *p != me).collect();
            if pids.is_empty() {
                continue;
            }
            left.get_or_insert((dir.to_path_buf(), pids.len()));
            for pid in pids {
                match kill(Pid::from_raw(pid), Signal::SIGKILL) {
                    Ok(()) | Err(Errno::ESRCH) => {}
                    Err(errno) => {
                        first_err.get_or_insert(CgroupError::Kill { pid, path: dir.to_path_buf(), errno });
                    }
                }
            }
        }
        let Some((path, count)) = left else {
            return Ok(());
        };
        if Instant::now() >= deadline {
            return Err(first_err.unwrap_or(CgroupError::NotEmpty {
                path,
                count,
                waited: started.elapsed(),
            }));
        }
        std::thread::sleep(POLL);
    }
}

fn rmdir_tree(dir: &Path, deadline: Instant) -> Result<(), Errno> {
    for sub in subdirs(dir) {
        rmdir_tree(&sub, deadline)?;
    }
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) => match errno_of(&e) {
                Errno::ENOENT => return Ok(()),
                Errno::EBUSY if Instant::now() < deadline => {
                    std::thread::sleep(POLL);
                }
                errno => return Err(errno),
            },
        }
    }
}

/// The deadlines of one teardown: killing, then removing.
pub(crate) fn teardown_deadlines() -> (Instant, Instant, Instant) {
    let start = Instant::now();
    (start, start + KILL_TIMEOUT, start + KILL_TIMEOUT + RMDIR_GRACE)
}

/// Write one limit file of the run cgroup `dir`; a failure names the limit.
pub(crate) fn set_limit(dir: &Path, file: &str, value: &str, limit: &'static str) -> Result<(), CgroupError> {
    let path = dir.join(file);
    write_file(&path, value).map_err(|errno| CgroupError::Limit {
        limit,
        path,
        value: value.to_owned(),
        errno,
    })
}

/// Whether this process could create `dir` (or use it, when it exists), by access(2).
pub(crate) fn can_create_in(dir: &Path) -> bool {
    check_can_create_in(dir).is_ok()
}

/// [`can_create_in`] with the reason: `EACCES`, `EROFS`, or `ENOENT` without a parent.
pub(crate) fn check_can_create_in(dir: &Path) -> Result<(), Errno> {
    let target = if dir.is_dir() { Some(dir) } else { dir.parent() };
    let target = target.ok_or(Errno::ENOENT)?;
    nix::unistd::access(target, nix::unistd::AccessFlags::W_OK)
}
