//! Directory handles for unpacking hostile streams: every name is resolved relative
//! to an open directory, one component at a time or with `openat2(RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS)`, so a symlink planted in the destination (by an earlier entry,
//! or by a guest writing to a shared directory while the stream is unpacked) is never
//! followed, and a name checked once is never looked up again by path.

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

fn cstr(name: &OsStr) -> io::Result<CString> {
    CString::new(name.as_bytes()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "name contains a NUL byte"))
}

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    match rc {
        rc if rc < 0 => Err(io::Error::last_os_error()),
        rc => Ok(rc),
    }
}

/// What `stat` says of a name, without following it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    Symlink,
    Other,
}

/// An open directory that names are resolved beneath.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
}

impl Dir {
    /// Opens `path` as the user typed it (its symlinks followed, as `cp` does for the
    /// destination it was given); everything below it is resolved beneath it.
    pub fn open(path: &Path) -> io::Result<Dir> {
        let path = cstr(path.as_os_str())?;
        // SAFETY: a valid NUL-terminated path; the returned fd is owned below.
        let fd = check(unsafe { libc::open(path.as_ptr(), libc::O_DIRECTORY | libc::O_RDONLY | libc::O_CLOEXEC) })?;
        // SAFETY: `fd` was just opened and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Dir { fd })
    }

    fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Opens the directory `rel` (relative components only) beneath this one; fails
    /// with `ELOOP` on any symlink on the way and `EXDEV` on any escape.
    pub fn open_dir(&self, rel: &Path) -> io::Result<Dir> {
        let name = cstr(rel.as_os_str())?;
        // SAFETY: open_how is plain data; zeroed is a valid value for every field.
        let mut how: libc::open_how = unsafe { std::mem::zeroed() };
        how.flags = (libc::O_DIRECTORY | libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW) as u64;
        how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS;
        // SAFETY: valid dirfd, NUL-terminated name, and an open_how of the size passed.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                self.raw(),
                name.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the syscall returned a new fd that nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
        Ok(Dir { fd })
    }

    /// The (device, inode) of this directory.
    pub fn identity(&self) -> io::Result<(u64, u64)> {
        let st = fstat(self.raw())?;
        Ok((st.st_dev, st.st_ino))
    }

    /// The kind of `name` in this directory, `None` when there is nothing there.
    pub fn kind(&self, name: &OsStr) -> io::Result<Option<Kind>> {
        let c = cstr(name)?;
        // SAFETY: an all-zero stat is a valid buffer for fstatat to fill.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: valid dirfd, NUL-terminated name, and a stat buffer.
        let rc = unsafe { libc::fstatat(self.raw(), c.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::NotFound => Ok(None),
                _ => Err(e),
            };
        }
        Ok(Some(match st.st_mode & libc::S_IFMT {
            libc::S_IFDIR => Kind::Dir,
            libc::S_IFLNK => Kind::Symlink,
            _ => Kind::Other,
        }))
    }

    pub fn mkdir(&self, name: &OsStr, mode: u32) -> io::Result<()> {
        let c = cstr(name)?;
        // SAFETY: valid dirfd and NUL-terminated name.
        check(unsafe { libc::mkdirat(self.raw(), c.as_ptr(), mode as libc::mode_t) }).map(drop)
    }

    /// Creates a new regular file, never opening an existing name or a symlink.
    pub fn create_file(&self, name: &OsStr, mode: u32) -> io::Result<File> {
        let c = cstr(name)?;
        let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        // SAFETY: valid dirfd and NUL-terminated name; the fd is owned below.
        let fd = check(unsafe { libc::openat(self.raw(), c.as_ptr(), flags, mode as libc::c_uint) })?;
        // SAFETY: `fd` was just opened and is owned by nobody else.
        Ok(unsafe { File::from_raw_fd(fd) })
    }

    pub fn symlink(&self, target: &[u8], name: &OsStr) -> io::Result<()> {
        let (target, c) = (cstr(OsStr::from_bytes(target))?, cstr(name)?);
        // SAFETY: NUL-terminated strings and a valid dirfd.
        check(unsafe { libc::symlinkat(target.as_ptr(), self.raw(), c.as_ptr()) }).map(drop)
    }

    /// A hard link `name` here to `from_name` in `from`, which is not followed when it
    /// is a symlink.
    pub fn hard_link(&self, from: &Dir, from_name: &OsStr, name: &OsStr) -> io::Result<()> {
        let (src, dst) = (cstr(from_name)?, cstr(name)?);
        // SAFETY: valid dirfds and NUL-terminated names; flags 0 follows nothing.
        check(unsafe { libc::linkat(from.raw(), src.as_ptr(), self.raw(), dst.as_ptr(), 0) }).map(drop)
    }

    pub fn mknod(&self, name: &OsStr, mode: u32, dev: libc::dev_t) -> io::Result<()> {
        let c = cstr(name)?;
        // SAFETY: valid dirfd and NUL-terminated name.
        check(unsafe { libc::mknodat(self.raw(), c.as_ptr(), mode as libc::mode_t, dev) }).map(drop)
    }

    /// Renames `from` over `to`, both in this directory; a symlink at `to` is replaced,
    /// never followed.
    pub fn rename(&self, from: &OsStr, to: &OsStr) -> io::Result<()> {
        let (a, b) = (cstr(from)?, cstr(to)?);
        // SAFETY: valid dirfd and NUL-terminated names.
        check(unsafe { libc::renameat(self.raw(), a.as_ptr(), self.raw(), b.as_ptr()) }).map(drop)
    }

    pub fn unlink(&self, name: &OsStr) -> io::Result<()> {
        let c = cstr(name)?;
        // SAFETY: valid dirfd and NUL-terminated name.
        check(unsafe { libc::unlinkat(self.raw(), c.as_ptr(), 0) }).map(drop)
    }

    /// Sets owner and group of `name` itself (a symlink is not followed).
    pub fn chown(&self, name: &OsStr, uid: u32, gid: u32) -> io::Result<()> {
        let c = cstr(name)?;
        // SAFETY: valid dirfd and NUL-terminated name.
        check(unsafe { libc::fchownat(self.raw(), c.as_ptr(), uid, gid, libc::AT_SYMLINK_NOFOLLOW) }).map(drop)
    }

    /// Sets the mode of this directory.
    pub fn chmod_self(&self, mode: u32) -> io::Result<()> {
        fchmod(self.raw(), mode)
    }

    pub fn chown_self(&self, uid: u32, gid: u32) -> io::Result<()> {
        // SAFETY: a valid fd.
        check(unsafe { libc::fchown(self.raw(), uid, gid) }).map(drop)
    }

    pub fn set_mtime_self(&self, mtime: i64) -> io::Result<()> {
        set_mtime(self.raw(), mtime)
    }
}

fn fstat(fd: RawFd) -> io::Result<libc::stat> {
    // SAFETY: an all-zero stat is a valid buffer for fstat to fill.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a valid fd and stat buffer.
    check(unsafe { libc::fstat(fd, &mut st) })?;
    Ok(st)
}

/// Sets the mode of an open file.
pub fn fchmod(fd: RawFd, mode: u32) -> io::Result<()> {
    // SAFETY: a valid fd.
    check(unsafe { libc::fchmod(fd, mode as libc::mode_t) }).map(drop)
}

/// Sets access and modification time of an open file to `mtime` (seconds).
pub fn set_mtime(fd: RawFd, mtime: i64) -> io::Result<()> {
    let t = libc::timespec {
        tv_sec: mtime as _,
        tv_nsec: 0,
    };
    let times = [t, t];
    // SAFETY: a valid fd and an array of two timespecs.
    check(unsafe { libc::futimens(fd, times.as_ptr()) }).map(drop)
}

/// The process's umask, read without changing it (`/proc/self/status`); 022 when
/// the kernel does not say.
pub fn current_umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Umask:"))
                .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        })
        .unwrap_or(0o022)
}
