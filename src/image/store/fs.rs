//! Crash-safe file primitives: atomic publication, advisory locks, ownership checks.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// An advisory `flock` held until dropped.
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

impl Lock {
    /// Blocks until the exclusive lock on `path` is held.
    pub fn exclusive(path: &Path) -> io::Result<Lock> {
        Self::acquire(path, libc::LOCK_EX)
    }

    /// Blocks until a shared lock on `path` is held.
    pub fn shared(path: &Path) -> io::Result<Lock> {
        Self::acquire(path, libc::LOCK_SH)
    }

    /// Takes the exclusive lock only if nobody holds the file locked.
    pub fn try_exclusive(path: &Path) -> io::Result<Option<Lock>> {
        let file = OpenOptions::new().read(true).open(path)?;
        match flock(&file, libc::LOCK_EX | libc::LOCK_NB) {
            Ok(()) => Ok(Some(Lock { _file: file })),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn acquire(path: &Path, op: libc::c_int) -> io::Result<Lock> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)?;
        flock(&file, op)?;
        Ok(Lock { _file: file })
    }
}

/// Locks an already open file (used for temp files, whose lock marks them live).
pub fn flock(file: &File, op: libc::c_int) -> io::Result<()> {
    loop {
        // SAFETY: flock only reads the fd, which `file` keeps open for the call.
        let rc = unsafe { libc::flock(file.as_raw_fd(), op) };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// fsyncs a directory so a rename inside it is durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes `bytes` to `tmp_dir/<unique>`, fsyncs, renames onto `dest`, fsyncs the
/// destination directory. Readers see the old file or the whole new one.
pub fn write_atomic(tmp_dir: &Path, dest: &Path, bytes: &[u8]) -> io::Result<()> {
    let (mut file, tmp) = create_temp(tmp_dir)?;
    let result = (|| {
        file.write_all(bytes)?;
        file.sync_all()?;
        publish(&tmp, dest)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Renames a finished temp file onto its final name and makes that durable.
pub fn publish(tmp: &Path, dest: &Path) -> io::Result<()> {
    fs::rename(tmp, dest)?;
    sync_dir(dest.parent().unwrap_or(Path::new(".")))
}

/// Creates a new private temp file `tmp_dir/<pid>-<n>` and holds a lock on it, so a
/// cleaner can tell live temp files from those of crashed processes.
pub fn create_temp(tmp_dir: &Path) -> io::Result<(File, PathBuf)> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    loop {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!(
            "{}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            nanos
        );
        let path = tmp_dir.join(name);
        match OpenOptions::new()
            .write(true)
            .read(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
        {
            Ok(file) => {
                flock(&file, libc::LOCK_EX)?;
                // Between create and flock another process's cleaner may have taken
                // the file for stale and unlinked it; then start over.
                if file.metadata()?.nlink() == 0 {
                    continue;
                }
                return Ok((file, path));
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Removes temp files whose writer is gone (nobody holds their lock).
pub fn remove_stale_temps(tmp_dir: &Path) -> io::Result<usize> {
    let mut removed = 0;
    for entry in fs::read_dir(tmp_dir)? {
        let path = entry?.path();
        if let Ok(Some(_lock)) = Lock::try_exclusive(&path) {
            if fs::remove_file(&path).is_ok() {
                removed += 1;
            }
        }
    }
    Ok(removed)
}

/// Bytes allocated on disk (`st_blocks * 512`) by `path` and, for a directory,
/// everything below it; symlinks are not followed and hard-linked files count once.
/// Sparse files count what they hold, not their apparent size. Entries that vanish
/// meanwhile count nothing; a missing `path` is 0.
pub fn allocated_bytes(path: &Path) -> io::Result<u64> {
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        let meta = match fs::symlink_metadata(&p) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if meta.nlink() > 1 && !meta.is_dir() && !seen.insert((meta.dev(), meta.ino())) {
            continue;
        }
        total += meta.blocks() * 512;
        if meta.is_dir() {
            match fs::read_dir(&p) {
                Ok(entries) => stack.extend(entries.flatten().map(|e| e.path())),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(total)
}

/// Why a store directory is not trusted.
#[derive(Debug, thiserror::Error)]
pub enum OwnershipError {
    #[error("store directory {0} is a symbolic link; refusing to use it")]
    Symlink(PathBuf),
    #[error("store directory {path} is owned by uid {owner}, not by the current user (uid {me})")]
    Owner { path: PathBuf, owner: u32, me: u32 },
    #[error("store directory {path} is writable by group or others (mode {mode:o}); run: chmod go-w {path}")]
    Writable { path: PathBuf, mode: u32 },
    #[error("store path {0} exists but is not a directory")]
    NotDir(PathBuf),
    #[error("cannot inspect store directory {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Creates `dir` (mode 0700) if missing, then checks it is a real directory owned by
/// the current user and writable by nobody else.
pub fn ensure_private_dir(dir: &Path) -> Result<(), OwnershipError> {
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(source) => {
            return Err(OwnershipError::Io {
                path: dir.to_owned(),
                source,
            })
        }
    }
    check_private_dir(dir)
}

/// Checks an existing directory as `ensure_private_dir` does.
pub fn check_private_dir(dir: &Path) -> Result<(), OwnershipError> {
    let meta = fs::symlink_metadata(dir).map_err(|source| OwnershipError::Io {
        path: dir.to_owned(),
        source,
    })?;
    if meta.file_type().is_symlink() {
        return Err(OwnershipError::Symlink(dir.to_owned()));
    }
    if !meta.is_dir() {
        return Err(OwnershipError::NotDir(dir.to_owned()));
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        return Err(OwnershipError::Owner {
            path: dir.to_owned(),
            owner: meta.uid(),
            me,
        });
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(OwnershipError::Writable {
            path: dir.to_owned(),
            mode,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_replaces_whole_file_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join("tmp");
        fs::create_dir(&tmp).unwrap();
        let dest = dir.path().join("index.json");
        write_atomic(&tmp, &dest, b"one").unwrap();
        write_atomic(&tmp, &dest, b"two").unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"two");
        assert_eq!(fs::read_dir(&tmp).unwrap().count(), 0);
    }

    #[test]
    fn stale_temp_is_removed_but_live_temp_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (_live, live_path) = create_temp(dir.path()).unwrap();
        let stale = dir.path().join("12345-0-0");
        fs::write(&stale, b"partial").unwrap();
        assert_eq!(remove_stale_temps(dir.path()).unwrap(), 1);
        assert!(live_path.exists());
        assert!(!stale.exists());
    }

    #[test]
    fn temp_unlinked_by_a_cleaner_before_its_lock_is_not_handed_out() {
        let dir = tempfile::tempdir().unwrap();
        for _ in 0..200 {
            let (file, path) = create_temp(dir.path()).unwrap();
            assert!(path.exists());
            assert!(file.metadata().unwrap().nlink() > 0);
            drop(file);
            remove_stale_temps(dir.path()).unwrap();
        }
    }

    #[test]
    fn private_dir_rejects_group_writable_and_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("store");
        ensure_private_dir(&d).unwrap();
        fs::set_permissions(&d, fs::Permissions::from_mode(0o777)).unwrap();
        assert!(matches!(check_private_dir(&d), Err(OwnershipError::Writable { .. })));
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&d, &link).unwrap();
        assert!(matches!(check_private_dir(&link), Err(OwnershipError::Symlink(_))));
    }

    #[test]
    fn allocated_bytes_counts_blocks_not_apparent_size() {
        let dir = tempfile::tempdir().unwrap();
        let sparse = fs::File::create(dir.path().join("sparse")).unwrap();
        sparse.set_len(1 << 30).unwrap();
        fs::write(dir.path().join("data"), vec![7u8; 1 << 20]).unwrap();
        fs::hard_link(dir.path().join("data"), dir.path().join("link")).unwrap();
        let blocks = |p: &str| fs::symlink_metadata(dir.path().join(p)).unwrap().blocks() * 512;
        let total = allocated_bytes(dir.path()).unwrap();
        assert_eq!(total, blocks("") + blocks("sparse") + blocks("data"));
        assert!(total < 4 << 20, "the sparse gigabyte was counted: {total}");
        assert_eq!(allocated_bytes(&dir.path().join("missing")).unwrap(), 0);
    }

    #[test]
    fn exclusive_lock_blocks_try_lock() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.lock");
        let held = Lock::exclusive(&p).unwrap();
        assert!(Lock::try_exclusive(&p).unwrap().is_none());
        drop(held);
        assert!(Lock::try_exclusive(&p).unwrap().is_some());
    }
}
