//! The sandbox's filesystem: a fresh tmpfs root with read-only binds of the host's system
//! directories, a generated `/etc`, fresh `/proc`, a minimal `/dev`, a size-limited `/tmp` and
//! the writable `/workspace`; then `pivot_root` with the old root detached.
//!
//! Runs in the sandbox init, in its own mount namespace. The new root is a tmpfs mounted over
//! `/tmp` (the host's `/tmp` is hidden only in that namespace) and built from host paths; the
//! caller's bind sources are pinned by descriptors first, so one under `/tmp` stays reachable.
//! Then `pivot_root(".", ".")` puts it at `/`, and the host's root, left stacked on top, is
//! detached in one go, as runc does.

use std::fs;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{symlink, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{umask, Mode};
use nix::sys::statvfs::{statvfs, FsFlags};

use crate::error::Stage;
use crate::spec::{NetworkMode, SandboxSpec, Workspace, SANDBOX_UID};

/// Host directories under `/` bound read-only (or recreated as symlinks when they are symlinks).
const SYSTEM_DIRS: &[&str] = &["usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32"];

/// Host `/etc` entries the dynamic loader, compilers, TLS and common runtimes read; everything
/// else in the sandbox's `/etc` is generated. Left out, as nothing reads them at run time: the
/// inputs of `update-ca-certificates` (`ca-certificates`, `ca-certificates.conf`; the bundle
/// itself is under `ssl`), and Debian's `python3` and `python3.X` packaging directories (the
/// latter's `sitecustomize.py` looks for an apport crash hook at every Python start, 0.2 ms).
const ETC_FROM_HOST: &[&str] = &[
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "alternatives",
    "ssl",
    "pki",
    "crypto-policies",
    "fonts",
    "localtime",
    "timezone",
    "protocols",
    "services",
    "os-release",
    "debian_version",
];

/// `/proc` entries that must not be reachable: covered with `/dev/null` (files) or an empty
/// read-only tmpfs (directories), as Docker masks them.
const PROC_MASKED_FILES: &[&str] =
    &["kcore", "sysrq-trigger", "timer_list", "keys", "sched_debug", "kallsyms"];
const PROC_MASKED_DIRS: &[&str] = &["sys", "acpi", "scsi", "firmware", "asound", "bus", "irq"];

/// Device nodes bound from the host `/dev`.
const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

type SetupResult = Result<(), (Stage, Errno)>;

fn at(stage: Stage) -> impl Fn(Errno) -> (Stage, Errno) {
    move |e| (stage, e)
}

fn io_at(stage: Stage) -> impl Fn(std::io::Error) -> (Stage, Errno) {
    move |e| (stage, Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))
}

/// Build the whole filesystem and pivot into it. On return the process's root is the sandbox
/// root and its cwd is `/`.
pub fn build(spec: &SandboxSpec) -> SetupResult {
    // Files made here get the modes asked for; the caller's umask is back for the payload.
    let callers = umask(Mode::from_bits_truncate(0o022));
    let built = build_root(spec);
    umask(callers);
    built
}

/// Where the new root is built: its tmpfs is mounted over the host's `/tmp`, in the sandbox's
/// own mount namespace, so the host sees nothing.
const STAGING: &str = "/tmp";

fn build_root(spec: &SandboxSpec) -> SetupResult {
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .map_err(at(Stage::MountPrivate))?;
    // Pinned before the staging mount can hide them (a workspace under /tmp) or a symlink can
    // lead into it; dropped before the pivot, so no host descriptor reaches the sandbox.
    let sources = Sources::pin(spec)?;
    mount(
        Some("tmpfs"),
        STAGING,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=0755,size=1m"),
    )
    .map_err(at(Stage::RootFs))?;
    let root = Path::new(STAGING);
    bind_system_dirs(root)?;
    write_etc(root, spec)?;
    mount_proc(root)?;
    mount_dev(root, spec.limits.tmp_size_bytes)?;
    mount_tmpfs(root, "tmp", "mode=1777", spec.limits.tmp_size_bytes, Stage::RootFs)?;
    match &spec.workspace {
        Workspace::Fresh { size_bytes } => mount_tmpfs(
            root,
            "workspace",
            &format!("mode=0755,uid={SANDBOX_UID},gid={SANDBOX_UID}"),
            *size_bytes,
            Stage::Binds,
        )?,
        Workspace::Host { path } => {
            bind_path(&sources.path_of(path), &root.join("workspace"), false, Stage::Binds)?;
        }
    }
    for bind in &spec.binds {
        let dst = inside(root, &bind.destination);
        bind_path(&sources.path_of(&bind.source), &dst, bind.readonly, Stage::Binds)?;
    }
    drop(sources);

    // Seal: nothing on the root tmpfs is writable from inside.
    mount(
        None::<&str>,
        root,
        None::<&str>,
        MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        None::<&str>,
    )
    .map_err(at(Stage::RootFs))?;

    // The new root goes to `/`; the host's root, stacked on top of it, is detached whole.
    std::env::set_current_dir(root).map_err(io_at(Stage::PivotRoot))?;
    nix::unistd::pivot_root(".", ".").map_err(at(Stage::PivotRoot))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(at(Stage::PivotRoot))?;
    std::env::set_current_dir("/").map_err(io_at(Stage::PivotRoot))?;
    Ok(())
}

/// The caller's bind sources (and host workspace), each held by an `O_PATH` descriptor and
/// bound through `/proc/self/fd/N`: the mount follows the descriptor to the very file or
/// directory opened before the staging tmpfs went up.
struct Sources {
    pinned: Vec<(PathBuf, OwnedFd)>,
}

impl Sources {
    fn pin(spec: &SandboxSpec) -> Result<Sources, (Stage, Errno)> {
        let workspace = match &spec.workspace {
            Workspace::Host { path } => Some(path),
            Workspace::Fresh { .. } => None,
        };
        let paths = workspace.into_iter().chain(spec.binds.iter().map(|b| &b.source));
        let pinned = paths
            .map(|path| {
                let file = fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_PATH)
                    .open(path)
                    .map_err(io_at(Stage::Binds))?;
                Ok((path.clone(), OwnedFd::from(file)))
            })
            .collect::<Result<_, _>>()?;
        Ok(Sources { pinned })
    }

    /// What to bind for the host path `path`.
    fn path_of(&self, path: &Path) -> PathBuf {
        match self.pinned.iter().find(|(p, _)| p == path) {
            Some((_, fd)) => PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd())),
            None => path.to_owned(),
        }
    }
}

/// Sandbox path as seen while building.
fn inside(root: &Path, path: &Path) -> PathBuf {
    root.join(path.strip_prefix("/").unwrap_or(path))
}

fn bind_system_dirs(root: &Path) -> SetupResult {
    for (src, kind) in host_entries(Path::new("/"), SYSTEM_DIRS).map_err(io_at(Stage::RootFs))? {
        let dst = inside(root, &src);
        if kind.is_symlink() {
            let target = fs::read_link(&src).map_err(io_at(Stage::RootFs))?;
            symlink(target, &dst).map_err(io_at(Stage::RootFs))?;
        } else if kind.is_dir() {
            bind_dir(&src, &dst, Stage::RootFs)?;
        }
    }
    Ok(())
}

/// The paths of the entries of the host directory `dir` named in `wanted`, with their types
/// (symbolic links not followed). One directory read tells every type, where a lookup per
/// wanted name would cost a system call each, present or not.
fn host_entries(dir: &Path, wanted: &[&str]) -> std::io::Result<Vec<(PathBuf, fs::FileType)>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name().to_str().is_some_and(|name| wanted.contains(&name)) {
            found.push((entry.path(), entry.file_type()?));
        }
    }
    Ok(found)
}

/// Bind the host directory `src` read-only onto `dst`, a new directory in an existing one of the
/// staging root.
fn bind_dir(src: &Path, dst: &Path, stage: Stage) -> SetupResult {
    fs::create_dir(dst).map_err(io_at(stage))?;
    bind_onto(src, dst, true, stage)
}

/// Bind `src` (a host path) onto `dst` (under the staging root), creating the mount point,
/// then make it read-only if asked. The remount keeps the flags the kernel locks on mounts that
/// come from a more privileged namespace (nosuid, nodev, noexec, atime), or it would be refused.
fn bind_path(src: &Path, dst: &Path, readonly: bool, stage: Stage) -> SetupResult {
    let meta = fs::metadata(src).map_err(io_at(stage))?;
    if let Some(parent) = dst.parent() {
        fs::create_dir_all(parent).map_err(io_at(stage))?;
    }
    if meta.is_dir() {
        match fs::create_dir(dst) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(io_at(stage)(e)),
            _ => {}
        }
    } else if !dst.exists() {
        fs::File::create(dst).map_err(io_at(stage))?;
    }
    bind_onto(src, dst, readonly, stage)
}

/// Bind `src` onto the existing mount point `dst` and make it read-only if asked.
fn bind_onto(src: &Path, dst: &Path, readonly: bool, stage: Stage) -> SetupResult {
    mount(Some(src), dst, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
        .map_err(at(stage))?;
    restrict_bind(dst, readonly).map_err(at(stage))
}

/// Make the bind at `dst` nosuid, nodev and, if asked, read-only. `mount_setattr(2)` does it in
/// one call and leaves the mount's other flags alone; kernels before 5.12 get a remount that
/// repeats the flags the kernel locks.
fn restrict_bind(dst: &Path, readonly: bool) -> Result<(), Errno> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dst.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)?;
    match crate::sys::restrict_mount(&path, readonly) {
        Err(Errno::ENOSYS) => remount_keeping_locked(dst, readonly),
        other => other,
    }
}

/// [`restrict_bind`] by `MS_REMOUNT`, which resets every flag it is not given: the ones the
/// kernel locks on a mount from a more privileged namespace (read-only, noexec, atime) are read
/// back first, or the remount would be refused.
fn remount_keeping_locked(dst: &Path, readonly: bool) -> Result<(), Errno> {
    let mut flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    if readonly {
        flags |= MsFlags::MS_RDONLY;
    }
    flags |= locked_flags(dst)?;
    mount(None::<&str>, dst, None::<&str>, flags, None::<&str>)
}

fn locked_flags(path: &Path) -> Result<MsFlags, Errno> {
    let st = statvfs(path)?;
    let f = st.flags();
    let mut flags = MsFlags::empty();
    for (fs_flag, ms_flag) in [
        (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if f.contains(fs_flag) {
            flags |= ms_flag;
        }
    }
    Ok(flags)
}

fn write_etc(root: &Path, spec: &SandboxSpec) -> SetupResult {
    let etc = root.join("etc");
    fs::create_dir(&etc).map_err(io_at(Stage::Etc))?;
    for (name, contents) in generated_etc(spec) {
        write_readable(&etc.join(name), contents.as_bytes())?;
    }
    let mut buf = vec![0u8; 64 * 1024];
    for (src, kind) in host_entries(Path::new("/etc"), ETC_FROM_HOST).map_err(io_at(Stage::Etc))? {
        let dst = inside(root, &src);
        if kind.is_symlink() {
            let target = fs::read_link(&src).map_err(io_at(Stage::Etc))?;
            symlink(target, &dst).map_err(io_at(Stage::Etc))?;
        } else if kind.is_file() {
            // A copy on the root tmpfs (sealed read-only below) costs less than a bind and its
            // read-only remount, and these files are small.
            let len = read_small(&src, &mut buf).map_err(io_at(Stage::Etc))?;
            write_readable(&dst, &buf[..len])?;
        } else if kind.is_dir() {
            bind_dir(&src, &dst, Stage::Etc)?;
        }
    }
    Ok(())
}

/// Read the file at `path` into `buf`, growing it when needed, and return its length. Plain reads
/// into one buffer: `fs::read` would ask for the size first, a system call more per file.
fn read_small(path: &Path, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    let mut file = fs::File::open(path)?;
    let mut len = 0;
    loop {
        if len == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        match file.read(&mut buf[len..]) {
            Ok(0) => return Ok(len),
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Create `path` with mode 0644 holding `contents`. `build` has set the umask to 022, so the
/// mode needs no chmod.
fn write_readable(path: &Path, contents: &[u8]) -> SetupResult {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(path)
        .map_err(io_at(Stage::Etc))?;
    file.write_all(contents).map_err(io_at(Stage::Etc))
}

/// The generated part of `/etc`: it names only the sandbox user and knows nothing of the host.
fn generated_etc(spec: &SandboxSpec) -> Vec<(&'static str, String)> {
    let uid = SANDBOX_UID;
    let resolv = match spec.network {
        NetworkMode::Host => fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
        NetworkMode::None | NetworkMode::Proxied { .. } => String::new(),
    };
    vec![
        (
            "passwd",
            format!(
                "root:x:0:0:root:/root:/usr/sbin/nologin\nsandbox:x:{uid}:{uid}:sandbox:/workspace:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
            ),
        ),
        ("group", format!("root:x:0:\nsandbox:x:{uid}:\nnogroup:x:65534:\n")),
        ("hostname", format!("{}\n", spec.hostname)),
        (
            "hosts",
            format!(
                "127.0.0.1\tlocalhost {0}\n::1\tlocalhost ip6-localhost ip6-loopback {0}\n",
                spec.hostname
            ),
        ),
        ("resolv.conf", resolv),
        ("nsswitch.conf", "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nnetworks: files\nprotocols: files\nservices: files\n".to_string()),
    ]
}

fn mount_proc(root: &Path) -> SetupResult {
    let proc_dir = root.join("proc");
    fs::create_dir(&proc_dir).map_err(io_at(Stage::Proc))?;
    mount(
        Some("proc"),
        &proc_dir,
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .map_err(at(Stage::Proc))?;
    // What this kernel does not have is skipped: the mount fails with ENOENT, which costs no
    // more than looking first would.
    let present = |result: nix::Result<()>| match result {
        Err(Errno::ENOENT) => Ok(false),
        other => other.map(|()| true).map_err(at(Stage::Proc)),
    };
    for name in PROC_MASKED_FILES {
        let target = proc_dir.join(name);
        present(mount(Some("/dev/null"), &target, None::<&str>, MsFlags::MS_BIND, None::<&str>))?;
    }
    // The directories are covered by one empty read-only tmpfs, bound onto each after the first.
    let mut empty: Option<PathBuf> = None;
    for name in PROC_MASKED_DIRS {
        let target = proc_dir.join(name);
        let covered = match &empty {
            Some(first) => mount(Some(first), &target, None::<&str>, MsFlags::MS_BIND, None::<&str>),
            None => mount(
                Some("tmpfs"),
                &target,
                Some("tmpfs"),
                MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                Some("size=0"),
            ),
        };
        if present(covered)? && empty.is_none() {
            empty = Some(target);
        }
    }
    Ok(())
}

fn mount_dev(root: &Path, shm_size: u64) -> SetupResult {
    // A directory of the root tmpfs, sealed read-only with it: only the bound devices, pts and
    // shm (mounts of their own) are writable.
    let dev = root.join("dev");
    fs::create_dir(&dev).map_err(io_at(Stage::Dev))?;
    for name in DEVICES {
        let dst = dev.join(name);
        fs::File::create(&dst).map_err(io_at(Stage::Dev))?;
        mount(Some(&Path::new("/dev").join(name)), &dst, None::<&str>, MsFlags::MS_BIND, None::<&str>)
            .map_err(at(Stage::Dev))?;
    }
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ] {
        symlink(target, dev.join(name)).map_err(io_at(Stage::Dev))?;
    }
    let pts = dev.join("pts");
    fs::create_dir(&pts).map_err(io_at(Stage::Dev))?;
    mount(
        Some("devpts"),
        &pts,
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=620"),
    )
    .map_err(at(Stage::Dev))?;
    mount_tmpfs(&dev, "shm", "mode=1777", shm_size, Stage::Dev)
}

fn mount_tmpfs(parent: &Path, name: &str, mode: &str, size: u64, stage: Stage) -> SetupResult {
    let dir = parent.join(name);
    fs::create_dir(&dir).map_err(io_at(stage))?;
    mount(
        Some("tmpfs"),
        &dir,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(format!("{mode},size={size}").as_str()),
    )
    .map_err(at(stage))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both ways of restricting a bind (`mount_setattr`, and the remount older kernels get)
    /// leave it read-only, nosuid and nodev. Needs root: it binds in a mount namespace of its
    /// own thread.
    #[test]
    fn root_both_ways_of_restricting_a_bind_seal_it() {
        let base = std::env::temp_dir().join(format!("airlock-restrict-{}", std::process::id()));
        fs::create_dir_all(base.join("src")).unwrap();
        let sealed = std::thread::spawn({
            let base = base.clone();
            move || {
                nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).unwrap();
                mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
                    .unwrap();
                type Restrict = fn(&Path, bool) -> Result<(), Errno>;
                let ways: [(&str, Restrict); 2] =
                    [("mount_setattr", restrict_bind), ("remount", remount_keeping_locked)];
                ways.map(|(name, restrict)| {
                    let dst = base.join(name);
                    fs::create_dir(&dst).unwrap();
                    mount(Some(&base.join("src")), &dst, None::<&str>, MsFlags::MS_BIND, None::<&str>)
                        .unwrap();
                    restrict(&dst, true).unwrap();
                    let flags = statvfs(&dst).unwrap().flags();
                    let write = fs::write(dst.join("f"), "x").map_err(|e| e.raw_os_error());
                    (name, flags.contains(FsFlags::ST_RDONLY | FsFlags::ST_NOSUID | FsFlags::ST_NODEV), write)
                })
            }
        })
        .join()
        .unwrap();
        fs::remove_dir_all(&base).unwrap();
        for (name, flags_set, write) in sealed {
            assert!(flags_set, "{name}: not read-only, nosuid and nodev");
            assert_eq!(write, Err(Some(libc::EROFS)), "{name}: a write went through");
        }
    }
}
