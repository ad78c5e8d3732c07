//! `[security] max_concurrent_executions` across processes.
//!
//! A run holds one of `max` slots: an exclusive `flock(2)` on one of the files `slot-0` ..
//! `slot-(max-1)` in a directory shared by the runs to be counted together (for example
//! `$XDG_RUNTIME_DIR/airlock`, which only its user can write to). The kernel releases the
//! lock when the [`Slot`] is dropped or the process dies, even by `SIGKILL`, so a crashed run
//! never leaks a slot. The files are opened close-on-exec, so sandboxed programs do not
//! inherit them.
//!
//! The directory must belong to the effective user and not be writable by group or others
//! (checked on every [`acquire`]), and slot files are opened without following symbolic
//! links: otherwise another user could pre-create the directory, hold every slot, or point a
//! slot file elsewhere.
#![forbid(unsafe_code)]

use std::fs::{DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// How long to sleep between two rounds over the slot files.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Why no slot could be taken.
#[derive(Debug, thiserror::Error)]
pub enum ConcurrencyError {
    /// `max` is zero: no run could ever start.
    #[error("max concurrent executions must be at least 1, got 0")]
    ZeroMax,
    /// The slot directory cannot be created.
    #[error("cannot create slot directory {}: {source}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The slot directory belongs to another user or is writable by others.
    #[error("slot directory {} is not private: {reason}", path.display())]
    UnsafeDir {
        /// The directory.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A slot file cannot be opened or created.
    #[error("cannot open slot file {}: {source}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// `flock` failed for another reason than the slot being taken.
    #[error("cannot lock slot file {}: {source}", path.display())]
    Lock {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: Errno,
    },
    /// Every slot stayed taken for the whole wait.
    #[error("max {max} concurrent executions reached (waited {} ms for a free slot)", waited.as_millis())]
    Exhausted {
        /// The number of slots.
        max: u32,
        /// How long `acquire` waited.
        waited: Duration,
    },
}

/// One held slot; the slot is free again when this is dropped.
#[derive(Debug)]
pub struct Slot {
    index: u32,
    // Dropping the Flock unlocks, then closing the file releases anything left.
    _lock: Flock<File>,
}

impl Slot {
    /// The slot number, `0..max`.
    pub fn index(&self) -> u32 {
        self.index
    }
}

/// Take one of `max` slots in `dir` (created with mode 0700 if missing; slot files 0600),
/// trying every ~20 ms until one is free or `wait` has passed. Every slot is tried at least
/// once, even when `wait` is zero.
pub fn acquire(dir: &Path, max: u32, wait: Duration) -> Result<Slot, ConcurrencyError> {
    if max == 0 {
        return Err(ConcurrencyError::ZeroMax);
    }
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| ConcurrencyError::CreateDir { path: dir.to_path_buf(), source })?;
    check_private(dir)?;
    let start = Instant::now();
    loop {
        for index in 0..max {
            if let Some(slot) = try_slot(dir, index)? {
                return Ok(slot);
            }
        }
        let waited = start.elapsed();
        if waited >= wait {
            return Err(ConcurrencyError::Exhausted { max, waited });
        }
        thread::sleep(POLL_INTERVAL.min(wait.saturating_sub(waited)));
    }
}

/// The directory must be a directory of the effective user that only it can write to.
fn check_private(dir: &Path) -> Result<(), ConcurrencyError> {
    let meta = std::fs::metadata(dir)
        .map_err(|source| ConcurrencyError::CreateDir { path: dir.to_path_buf(), source })?;
    let euid = nix::unistd::geteuid().as_raw();
    let reason = if !meta.is_dir() {
        "it is not a directory".to_owned()
    } else if meta.uid() != euid {
        format!("it belongs to uid {}, not to uid {euid}", meta.uid())
    } else if meta.mode() & 0o022 != 0 {
        format!("its mode {:o} lets group or others write to it", meta.mode() & 0o7777)
    } else {
        return Ok(());
    };
    Err(ConcurrencyError::UnsafeDir { path: dir.to_path_buf(), reason })
}

/// Lock slot `index` if it is free.
fn try_slot(dir: &Path, index: u32) -> Result<Option<Slot>, ConcurrencyError> {
    let path = dir.join(format!("slot-{index}"));
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .map_err(|source| ConcurrencyError::Open { path: path.clone(), source })?;
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => return Ok(Some(Slot { index, _lock: lock })),
            Err((_, Errno::EWOULDBLOCK)) => return Ok(None),
            Err((f, Errno::EINTR)) => file = f,
            Err((_, source)) => return Err(ConcurrencyError::Lock { path, source }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> TempDir {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let path = std::env::temp_dir().join(format!(
                "airlock-test-slots-{}-{n}-{}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.subsec_nanos())
            ));
            std::fs::create_dir(&path).unwrap();
            TempDir(path)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn third_run_waits_until_a_slot_is_freed() {
        let tmp = TempDir::new();
        let dir = tmp.0.join("slots");
        let a = acquire(&dir, 2, Duration::ZERO).unwrap();
        let b = acquire(&dir, 2, Duration::ZERO).unwrap();
        let mut indices = [a.index(), b.index()];
        indices.sort_unstable();
        assert_eq!(indices, [0, 1]);

        let started = Instant::now();
        let e = acquire(&dir, 2, Duration::from_millis(100)).unwrap_err();
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(100), "{waited:?}");
        assert!(waited < Duration::from_secs(2), "{waited:?}");
        assert!(matches!(e, ConcurrencyError::Exhausted { max: 2, .. }));
        assert!(e.to_string().starts_with("max 2 concurrent executions reached"), "{e}");

        let freed = a.index();
        drop(a);
        let c = acquire(&dir, 2, Duration::from_millis(100)).unwrap();
        assert_eq!(c.index(), freed);
        drop(b);
        drop(c);
    }

    #[test]
    fn a_slot_freed_while_waiting_is_taken() {
        let tmp = TempDir::new();
        let held = acquire(&tmp.0, 1, Duration::ZERO).unwrap();
        let releaser = thread::spawn(move || {
            thread::sleep(Duration::from_millis(60));
            drop(held);
        });
        let started = Instant::now();
        let slot = acquire(&tmp.0, 1, Duration::from_secs(5)).unwrap();
        assert_eq!(slot.index(), 0);
        assert!(started.elapsed() < Duration::from_secs(4));
        releaser.join().unwrap();
    }

    #[test]
    fn locks_are_per_open_file_so_they_count_across_processes() {
        // flock locks belong to the open file description: a second open of the same file,
        // as another process would do, cannot take a held slot.
        let tmp = TempDir::new();
        let _slot = acquire(&tmp.0, 1, Duration::ZERO).unwrap();
        let other = File::open(tmp.0.join("slot-0")).unwrap();
        match Flock::lock(other, FlockArg::LockExclusiveNonblock) {
            Err((_, errno)) => assert_eq!(errno, Errno::EWOULDBLOCK),
            Ok(_) => panic!("slot locked twice"),
        }
    }

    #[test]
    fn permissions_and_zero_max() {
        let tmp = TempDir::new();
        let dir = tmp.0.join("a/b");
        let slot = acquire(&dir, 3, Duration::ZERO).unwrap();
        assert_eq!(slot.index(), 0);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("slot-0")), 0o600);
        assert!(matches!(acquire(&dir, 0, Duration::ZERO), Err(ConcurrencyError::ZeroMax)));
    }

    #[test]
    fn shared_directories_and_symlinked_slots_are_refused() {
        let tmp = TempDir::new();
        let dir = tmp.0.join("slots");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = acquire(&dir, 1, Duration::ZERO).unwrap_err();
        assert!(matches!(e, ConcurrencyError::UnsafeDir { .. }), "{e:?}");
        assert!(e.to_string().contains("lets group or others write"), "{e}");

        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        let target = tmp.0.join("elsewhere");
        std::os::unix::fs::symlink(&target, dir.join("slot-0")).unwrap();
        let e = acquire(&dir, 1, Duration::ZERO).unwrap_err();
        assert!(matches!(e, ConcurrencyError::Open { .. }), "{e:?}");
        assert!(!target.exists());

        // A symbolic link to a private directory of ours is as good as the directory.
        std::fs::remove_file(dir.join("slot-0")).unwrap();
        std::os::unix::fs::symlink(&dir, tmp.0.join("dir-link")).unwrap();
        let slot = acquire(&tmp.0.join("dir-link"), 1, Duration::ZERO).unwrap();
        assert_eq!(slot.index(), 0);
    }

    #[test]
    fn unusable_directory_is_reported() {
        let tmp = TempDir::new();
        let file = tmp.0.join("file");
        std::fs::write(&file, "").unwrap();
        let e = acquire(&file.join("slots"), 1, Duration::ZERO).unwrap_err();
        assert!(matches!(e, ConcurrencyError::CreateDir { .. }), "{e:?}");
    }
}
