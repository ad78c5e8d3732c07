//! The sandbox's filesystem: a fresh tmpfs root with read-only binds of the host's system
//! directories, a generated `/etc`, fresh `/proc`, a minimal `/dev`, a size-limited `/tmp` and
//! the writable `/workspace`; then `pivot_root` with the old root detached.
//!
//! Runs in the sandbox init, in its own mount namespace. The sequence follows bubblewrap: mount
//! a tmpfs over `/tmp`, pivot into it with the host root at `/oldroot`, build `/newroot` from
//! `/oldroot/...` sources (so host paths under `/tmp` stay reachable as bind sources), detach
//! `/oldroot`, and pivot into `/newroot`.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::statvfs::{statvfs, FsFlags};

use crate::error::Stage;
use crate::spec::{NetworkMode, SandboxSpec, Workspace, SANDBOX_UID};

/// Host directories bound read-only (or recreated as symlinks when they are symlinks).
const SYSTEM_DIRS: &[&str] = &["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"];

/// Host `/etc` entries the dynamic loader, TLS and common runtimes need; everything else in the
/// sandbox's `/etc` is generated.
const ETC_FROM_HOST: &[&str] = &[
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "alternatives",
    "ssl",
    "ca-certificates",
    "ca-certificates.conf",
    "pki",
    "crypto-policies",
    "localtime",
    "timezone",
    "mime.types",
    "protocols",
    "services",
    "os-release",
    "debian_version",
    "python3",
    "python3.11",
    "python3.12",
    "python3.13",
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
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .map_err(at(Stage::MountPrivate))?;

    // Stage 1: a scratch tmpfs becomes the root, with the host root under /oldroot.
    let base = "/tmp";
    mount(
        Some("tmpfs"),
        base,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=0755,size=1m"),
    )
    .map_err(at(Stage::RootFs))?;
    std::env::set_current_dir(base).map_err(io_at(Stage::RootFs))?;
    fs::create_dir("newroot").map_err(io_at(Stage::RootFs))?;
    fs::create_dir("oldroot").map_err(io_at(Stage::RootFs))?;
    nix::unistd::pivot_root(base, "oldroot").map_err(at(Stage::PivotRoot))?;
    std::env::set_current_dir("/").map_err(io_at(Stage::PivotRoot))?;

    // Stage 2: the sandbox root on its own tmpfs at /newroot.
    mount(
        Some("tmpfs"),
        "/newroot",
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=0755,size=1m"),
    )
    .map_err(at(Stage::RootFs))?;
    let root = Path::new("/newroot");
    bind_system_dirs(root)?;
    write_etc(root, spec)?;
    mount_proc(root)?;
    mount_dev(root, spec.limits.tmp_size_bytes)?;
    mount_tmpfs(root, "tmp", "mode=1777", spec.limits.tmp_size_bytes, Stage::RootFs)?;
    mount_workspace(root, &spec.workspace)?;
    for bind in &spec.binds {
        bind_path(&host(&bind.source), &inside(root, &bind.destination), bind.readonly, Stage::Binds)?;
    }

    // Seal: nothing on the root tmpfs is writable from inside.
    mount(
        None::<&str>,
        root,
        None::<&str>,
        MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        None::<&str>,
    )
    .map_err(at(Stage::RootFs))?;

    // Stage 3: drop the host and make /newroot the root.
    umount2("/oldroot", MntFlags::MNT_DETACH).map_err(at(Stage::PivotRoot))?;
    std::env::set_current_dir(root).map_err(io_at(Stage::PivotRoot))?;
    nix::unistd::pivot_root(".", ".").map_err(at(Stage::PivotRoot))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(at(Stage::PivotRoot))?;
    std::env::set_current_dir("/").map_err(io_at(Stage::PivotRoot))?;
    Ok(())
}

/// Host path as seen after the first pivot.
fn host(path: &Path) -> PathBuf {
    Path::new("/oldroot").join(path.strip_prefix("/").unwrap_or(path))
}

/// Sandbox path as seen while building.
fn inside(root: &Path, path: &Path) -> PathBuf {
    root.join(path.strip_prefix("/").unwrap_or(path))
}

fn bind_system_dirs(root: &Path) -> SetupResult {
    for dir in SYSTEM_DIRS {
        let src = host(Path::new(dir));
        let Ok(meta) = fs::symlink_metadata(&src) else { continue };
        let dst = inside(root, Path::new(dir));
        if meta.file_type().is_symlink() {
            let target = fs::read_link(&src).map_err(io_at(Stage::RootFs))?;
            symlink(target, &dst).map_err(io_at(Stage::RootFs))?;
        } else if meta.is_dir() {
            bind_path(&src, &dst, true, Stage::RootFs)?;
        }
    }
    Ok(())
}

/// Bind `src` (a host path under /oldroot) onto `dst` (under /newroot), creating the mount point,
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
    mount(Some(src), dst, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
        .map_err(at(stage))?;
    let mut flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    if readonly {
        flags |= MsFlags::MS_RDONLY;
    }
    flags |= locked_flags(dst).map_err(at(stage))?;
    mount(None::<&str>, dst, None::<&str>, flags, None::<&str>).map_err(at(stage))
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
    let files = generated_etc(spec);
    for (name, contents) in &files {
        fs::write(etc.join(name), contents).map_err(io_at(Stage::Etc))?;
        fs::set_permissions(etc.join(name), fs::Permissions::from_mode(0o644)).map_err(io_at(Stage::Etc))?;
    }
    for name in ETC_FROM_HOST {
        let src = host(&Path::new("/etc").join(name));
        let Ok(meta) = fs::symlink_metadata(&src) else { continue };
        let dst = etc.join(name);
        if meta.file_type().is_symlink() {
            let target = fs::read_link(&src).map_err(io_at(Stage::Etc))?;
            symlink(target, &dst).map_err(io_at(Stage::Etc))?;
        } else if meta.is_file() {
            // A copy on the root tmpfs (sealed read-only below) costs less than a bind and its
            // read-only remount, and these files are small.
            fs::copy(&src, &dst).map_err(io_at(Stage::Etc))?;
            fs::set_permissions(&dst, fs::Permissions::from_mode(0o644)).map_err(io_at(Stage::Etc))?;
        } else {
            bind_path(&src, &dst, true, Stage::Etc)?;
        }
    }
    Ok(())
}

/// The generated part of `/etc`: it names only the sandbox user and knows nothing of the host.
fn generated_etc(spec: &SandboxSpec) -> Vec<(&'static str, String)> {
    let uid = SANDBOX_UID;
    let resolv = match spec.network {
        NetworkMode::Host => fs::read_to_string("/oldroot/etc/resolv.conf").unwrap_or_default(),
        NetworkMode::None => String::new(),
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
    for name in PROC_MASKED_FILES {
        let target = proc_dir.join(name);
        if target.exists() {
            mount(Some("/oldroot/dev/null"), &target, None::<&str>, MsFlags::MS_BIND, None::<&str>)
                .map_err(at(Stage::Proc))?;
        }
    }
    for name in PROC_MASKED_DIRS {
        let target = proc_dir.join(name);
        if target.is_dir() {
            mount(
                Some("tmpfs"),
                &target,
                Some("tmpfs"),
                MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                Some("size=0"),
            )
            .map_err(at(Stage::Proc))?;
        }
    }
    Ok(())
}

fn mount_dev(root: &Path, shm_size: u64) -> SetupResult {
    let dev = root.join("dev");
    fs::create_dir(&dev).map_err(io_at(Stage::Dev))?;
    mount(
        Some("tmpfs"),
        &dev,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("mode=0755,size=64k"),
    )
    .map_err(at(Stage::Dev))?;
    for name in DEVICES {
        let dst = dev.join(name);
        fs::File::create(&dst).map_err(io_at(Stage::Dev))?;
        mount(Some(&host(&Path::new("/dev").join(name))), &dst, None::<&str>, MsFlags::MS_BIND, None::<&str>)
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
    mount_tmpfs(&dev, "shm", "mode=1777", shm_size, Stage::Dev)?;
    // Seal /dev itself: only the bound devices, pts and shm (separate mounts) stay writable.
    mount(
        None::<&str>,
        &dev,
        None::<&str>,
        MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .map_err(at(Stage::Dev))
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

fn mount_workspace(root: &Path, workspace: &Workspace) -> SetupResult {
    match workspace {
        Workspace::Fresh { size_bytes } => mount_tmpfs(
            root,
            "workspace",
            &format!("mode=0755,uid={SANDBOX_UID},gid={SANDBOX_UID}"),
            *size_bytes,
            Stage::Binds,
        ),
        Workspace::Host { path } => bind_path(&host(path), &root.join("workspace"), false, Stage::Binds),
    }
}
