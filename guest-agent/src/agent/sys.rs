//! Thin, checked wrappers over the Linux calls the agent needs and std lacks.

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

pub fn cstring(path: impl AsRef<OsStr>) -> io::Result<CString> {
    CString::new(path.as_ref().as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// mount(2); `data` is the filesystem's option string.
pub fn mount(source: &str, target: &Path, fstype: &str, flags: libc::c_ulong, data: Option<&str>) -> io::Result<()> {
    let (source, target, fstype) = (cstring(source)?, cstring(target)?, cstring(fstype)?);
    let data = data.map(cstring).transpose()?;
    // SAFETY: every pointer is a valid NUL-terminated string (or null for no data)
    // that outlives the call.
    check(unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            flags,
            data.as_ref().map_or(std::ptr::null(), |d| d.as_ptr().cast()),
        )
    })
    .map(drop)
}

pub fn bind(source: &Path, target: &Path) -> io::Result<()> {
    let (source, target) = (cstring(source)?, cstring(target)?);
    // SAFETY: valid NUL-terminated strings; a bind mount takes no fstype or data.
    check(unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND | libc::MS_REC,
            std::ptr::null(),
        )
    })
    .map(drop)
}

pub fn umount_detach(target: &Path) -> io::Result<()> {
    let target = cstring(target)?;
    // SAFETY: valid NUL-terminated string.
    check(unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) }).map(drop)
}

pub fn mknod(path: &Path, mode: libc::mode_t, major: u32, minor: u32) -> io::Result<()> {
    let path = cstring(path)?;
    // SAFETY: valid NUL-terminated string; makedev is a pure computation.
    check(unsafe { libc::mknod(path.as_ptr(), mode, libc::makedev(major, minor)) }).map(drop)
}

pub fn sethostname(name: &str) -> io::Result<()> {
    // SAFETY: the pointer and length describe `name`'s bytes.
    check(unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) }).map(drop)
}

pub fn kill(pid: i32, signal: i32) -> io::Result<()> {
    // SAFETY: kill(2) has no memory-safety preconditions.
    check(unsafe { libc::kill(pid, signal) }).map(drop)
}

/// A new pseudo-terminal: (master, slave).
pub fn open_pty() -> io::Result<(File, File)> {
    // SAFETY: posix_openpt returns a new descriptor or -1.
    let master = check(unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) })?;
    // SAFETY: `master` is a descriptor we own from here on.
    let master = unsafe { File::from_raw_fd(master) };
    // SAFETY: grantpt/unlockpt act on the valid master descriptor.
    check(unsafe { libc::grantpt(master.as_raw_fd()) })?;
    // SAFETY: as above.
    check(unsafe { libc::unlockpt(master.as_raw_fd()) })?;
    let mut name = [0 as libc::c_char; 128];
    // SAFETY: the buffer and its length are valid; ptsname_r NUL-terminates on success.
    let rc = unsafe { libc::ptsname_r(master.as_raw_fd(), name.as_mut_ptr(), name.len()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    // SAFETY: `name` was NUL-terminated by ptsname_r.
    let name = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) };
    // SAFETY: valid NUL-terminated path.
    let slave = check(unsafe { libc::open(name.as_ptr(), libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) })?;
    // SAFETY: `slave` is a new descriptor we own.
    Ok((master, unsafe { File::from_raw_fd(slave) }))
}

pub fn set_window_size(tty: &File, rows: u16, cols: u16) -> io::Result<()> {
    let size = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from the valid pointer.
    check(unsafe { libc::ioctl(tty.as_raw_fd(), libc::TIOCSWINSZ, &size) }).map(drop)
}

/// shutdown(2) of the writing half, so the peer reads end-of-stream.
pub fn shutdown_write(fd: &impl AsRawFd) {
    // SAFETY: shutdown on a descriptor we hold; errors are irrelevant at teardown.
    unsafe { libc::shutdown(fd.as_raw_fd(), libc::SHUT_WR) };
}

pub fn dup(fd: &impl AsRawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC returns a new descriptor or -1.
    let new = check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) })?;
    // SAFETY: `new` is a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// Tells the VMM that `/init` runs: one byte to the boot-mark port (needs ioperm).
pub fn boot_mark() {
    const PORT: u16 = 0x3f0;
    const VALUE: u8 = 0x68;
    // SAFETY: ioperm only changes this process's I/O permission bitmap.
    if unsafe { libc::ioperm(PORT.into(), 1, 1) } != 0 {
        return;
    }
    // SAFETY: the port was granted above; the write has no effect on memory.
    unsafe { std::arch::asm!("out dx, al", in("dx") PORT, in("al") VALUE, options(nomem, nostack, preserves_flags)) };
}

/// Stops the VM: the kernel's restart path resets through the i8042, where the VMM
/// ends the VM.
pub fn power_off() -> ! {
    // SAFETY: sync and reboot have no memory-safety preconditions.
    unsafe {
        libc::sync();
        libc::reboot(libc::RB_AUTOBOOT);
    }
    loop {
        std::thread::park();
    }
}

/// Confines the calling thread to `dir`: it gets its own root and working directory
/// (`unshare(CLONE_FS)`), then `chroot`s. Other threads keep the agent's root.
pub fn enter_root(dir: &Path) -> io::Result<()> {
    let dir = cstring(dir)?;
    // SAFETY: unshare with CLONE_FS only affects this thread's fs struct.
    check(unsafe { libc::unshare(libc::CLONE_FS) })?;
    // SAFETY: valid NUL-terminated path.
    check(unsafe { libc::chroot(dir.as_ptr()) })?;
    std::env::set_current_dir("/")
}

/// How many CPUs the guest has online.
pub fn online_cpus() -> u32 {
    // SAFETY: sysconf takes no pointers.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    u32::try_from(n).unwrap_or(1).max(1)
}
