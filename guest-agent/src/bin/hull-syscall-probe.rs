//! Test helper for the guest-fidelity lab suite, run inside a container: tries the
//! system calls and file system features real programs rely on (the ones a
//! `tinyconfig` kernel or a plain overlayfs lacks) and prints one line per feature,
//! `NAME ok` or `NAME failed: ERROR`. Exit status 1 when any failed.
//!
//!   hull-syscall-probe DIR [RENAME_FROM RENAME_TO]
//!
//! DIR is a directory of the container (on its overlayfs root) to create files in;
//! `readdir`'s inode numbers are compared with `stat`'s in DIR, `/etc` and `/bin`; RENAME_FROM, a directory from the
//! image, is renamed to RENAME_TO with rename(2) itself (no copy fallback).

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirEntryExt, MetadataExt};
use std::path::Path;

fn check(rc: libc::c_long) -> io::Result<libc::c_long> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn fd(rc: libc::c_long) -> io::Result<OwnedFd> {
    // SAFETY: a descriptor the kernel just returned to this process, owned here.
    check(rc).map(|n| unsafe { OwnedFd::from_raw_fd(n as i32) })
}

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("path without NUL")
}

fn madvise() -> io::Result<()> {
    let len = 1 << 20;
    // SAFETY: a new private anonymous mapping, used only here and unmapped below.
    let addr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if addr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the range is the mapping made above.
    let result = unsafe { check(libc::madvise(addr, len, libc::MADV_DONTNEED).into()) };
    // SAFETY: as above; nothing refers to the mapping any more.
    unsafe { libc::munmap(addr, len) };
    result.map(drop)
}

/// `<linux/fcntl.h>`'s DN_CREATE.
const DN_CREATE: libc::c_int = 0x4;

fn dnotify(dir: &Path) -> io::Result<()> {
    let d = fs::File::open(dir)?;
    // SAFETY: fcntl on a descriptor owned by `d`.
    check(unsafe { libc::fcntl(d.as_raw_fd(), libc::F_NOTIFY, DN_CREATE) }.into()).map(drop)
}

fn fanotify() -> io::Result<()> {
    // SAFETY: plain system call without pointers.
    fd(unsafe { libc::fanotify_init(libc::FAN_CLASS_NOTIF, libc::O_RDONLY as u32) }.into()).map(drop)
}

fn membarrier() -> io::Result<()> {
    // SAFETY: MEMBARRIER_CMD_QUERY (0) takes no pointers.
    check(unsafe { libc::syscall(libc::SYS_membarrier, 0, 0) }).map(drop)
}

fn kcmp() -> io::Result<()> {
    // SAFETY: KCMP_VM (1) compares two pids' address spaces; no pointers.
    let me = unsafe { libc::getpid() };
    // SAFETY: as above: two pids and integer arguments, no pointers.
    check(unsafe { libc::syscall(libc::SYS_kcmp, me, me, 1, 0, 0) }).map(drop)
}

fn process_vm_readv() -> io::Result<()> {
    let src = [7u8; 16];
    let mut dst = [0u8; 16];
    let local = libc::iovec {
        iov_base: dst.as_mut_ptr().cast(),
        iov_len: dst.len(),
    };
    let remote = libc::iovec {
        iov_base: src.as_ptr() as *mut _,
        iov_len: src.len(),
    };
    // SAFETY: both iovecs describe live buffers of this process.
    let n = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
    check(n as libc::c_long)?;
    (dst == src)
        .then_some(())
        .ok_or_else(|| io::Error::other("read the wrong bytes"))
}

fn io_uring() -> io::Result<()> {
    // struct io_uring_params is 120 bytes; zeroed asks for the defaults.
    let mut params = [0u8; 120];
    // SAFETY: a zeroed params struct of the kernel's size.
    fd(unsafe { libc::syscall(libc::SYS_io_uring_setup, 4, params.as_mut_ptr()) }).map(drop)
}

fn userfaultfd() -> io::Result<()> {
    // SAFETY: plain system call without pointers.
    fd(unsafe { libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC) }).map(drop)
}

fn bpf() -> io::Result<()> {
    // A socket filter `r0 = 0; exit`, interpreted (no JIT in the guest).
    let insns: [u64; 2] = [0x0000_0000_0000_00b7, 0x0000_0000_0000_0095];
    let license = c"GPL";
    // union bpf_attr for BPF_PROG_LOAD: type, insn_cnt, insns, license, then zeros.
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&1u32.to_ne_bytes()); // BPF_PROG_TYPE_SOCKET_FILTER
    attr[4..8].copy_from_slice(&2u32.to_ne_bytes());
    attr[8..16].copy_from_slice(&(insns.as_ptr() as u64).to_ne_bytes());
    attr[16..24].copy_from_slice(&(license.as_ptr() as u64).to_ne_bytes());
    // SAFETY: attr points at live memory of the size passed; insns and license live
    // until the call returns.
    fd(unsafe { libc::syscall(libc::SYS_bpf, 5, attr.as_ptr(), attr.len()) }).map(drop)
    // BPF_PROG_LOAD
}

fn memfd() -> io::Result<()> {
    // SAFETY: a NUL-terminated name.
    fd(unsafe { libc::memfd_create(c"probe".as_ptr(), libc::MFD_CLOEXEC) }.into()).map(drop)
}

fn time_namespace() -> io::Result<()> {
    // CLONE_NEWTIME applies to children; the probe makes none.
    // SAFETY: unshare takes no pointers.
    check(unsafe { libc::unshare(0x80) }.into()).map(drop)
}

fn map_files() -> io::Result<()> {
    fs::read_dir("/proc/self/map_files")?
        .next()
        .ok_or_else(|| io::Error::other("empty"))?
        .map(drop)
}

fn o_tmpfile(dir: &Path) -> io::Result<()> {
    let p = cpath(dir);
    // SAFETY: a NUL-terminated path.
    fd(unsafe { libc::open(p.as_ptr(), libc::O_TMPFILE | libc::O_RDWR, 0o600) }.into()).map(drop)
}

fn fallocate_and_copy_file_range(dir: &Path) -> io::Result<()> {
    let a = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(dir.join("probe-a"))?;
    let b = fs::File::create(dir.join("probe-b"))?;
    // SAFETY: plain calls on descriptors owned by `a` and `b`.
    unsafe {
        check(libc::fallocate(a.as_raw_fd(), 0, 0, 1 << 20).into())?;
        let n = check(libc::copy_file_range(
            a.as_raw_fd(),
            std::ptr::null_mut(),
            b.as_raw_fd(),
            std::ptr::null_mut(),
            4096,
            0,
        ) as libc::c_long)?;
        if n != 4096 {
            return Err(io::Error::other(format!("copied {n} bytes")));
        }
    }
    Ok(())
}

fn xattrs(dir: &Path) -> io::Result<()> {
    let path = dir.join("probe-a");
    let p = cpath(&path);
    // A file capability (cap_net_bind_service+ep, VFS_CAP_REVISION_2), as setcap writes it.
    let mut cap = [0u8; 20];
    cap[0..4].copy_from_slice(&0x0200_0001u32.to_le_bytes());
    cap[4..8].copy_from_slice(&(1u32 << 10).to_le_bytes());
    for (name, value) in [(c"user.probe", &b"1"[..]), (c"security.capability", &cap[..])] {
        // SAFETY: NUL-terminated strings and a buffer of the length passed.
        check(unsafe { libc::setxattr(p.as_ptr(), name.as_ptr(), value.as_ptr().cast(), value.len(), 0) }.into())?;
        let mut back = [0u8; 32];
        // SAFETY: as above, with a writable buffer.
        let n = check(
            unsafe { libc::getxattr(p.as_ptr(), name.as_ptr(), back.as_mut_ptr().cast(), back.len()) } as libc::c_long,
        )?;
        if &back[..n as usize] != value {
            return Err(io::Error::other(format!("{name:?} read back differently")));
        }
    }
    Ok(())
}

fn inode_numbers(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let st = fs::symlink_metadata(entry.path())?;
        if entry.ino() != st.ino() {
            return Err(io::Error::other(format!(
                "{}: readdir {} stat {}",
                entry.path().display(),
                entry.ino(),
                st.ino()
            )));
        }
    }
    Ok(())
}

/// A system call the kernel does not have gets ENOSYS, and nothing else happens.
fn unknown_syscall() -> io::Result<()> {
    // SAFETY: a number no kernel assigns; the call does nothing.
    match check(unsafe { libc::syscall(4095) }) {
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => Ok(()),
        Err(e) => Err(e),
        Ok(n) => Err(io::Error::other(format!("returned {n}"))),
    }
}

fn rename_dir(from: &Path, to: &Path) -> io::Result<()> {
    let (f, t) = (cpath(from), cpath(to));
    // SAFETY: NUL-terminated paths.
    check(unsafe { libc::rename(f.as_ptr(), t.as_ptr()) }.into()).map(drop)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(dir) = args.get(1).map(Path::new) else {
        eprintln!("usage: hull-syscall-probe DIR [RENAME_FROM RENAME_TO]");
        std::process::exit(2);
    };
    let mut results: Vec<(&str, io::Result<()>)> = vec![
        ("madvise", madvise()),
        ("dnotify", dnotify(dir)),
        ("fanotify", fanotify()),
        ("membarrier", membarrier()),
        ("kcmp", kcmp()),
        ("process_vm_readv", process_vm_readv()),
        ("io_uring", io_uring()),
        ("userfaultfd", userfaultfd()),
        ("bpf", bpf()),
        ("memfd_create", memfd()),
        ("time_namespace", time_namespace()),
        ("map_files", map_files()),
        // overlayfs has O_TMPFILE from Linux 6.6 on; the 6.1 guest has it on tmpfs.
        ("o_tmpfile", o_tmpfile(Path::new("/dev/shm"))),
        ("fallocate_copy_file_range", fallocate_and_copy_file_range(dir)),
        ("xattrs", xattrs(dir)),
        ("inode_numbers", inode_numbers(dir)),
        ("inode_numbers_etc", inode_numbers(Path::new("/etc"))),
        ("inode_numbers_bin", inode_numbers(Path::new("/bin"))),
        ("unknown_syscall_enosys", unknown_syscall()),
    ];
    if let (Some(from), Some(to)) = (args.get(2), args.get(3)) {
        results.push(("rename_dir", rename_dir(Path::new(from), Path::new(to))));
    }
    let mut failed = false;
    for (name, result) in results {
        match result {
            Ok(()) => println!("{name} ok"),
            Err(e) => {
                failed = true;
                println!("{name} failed: {e}");
            }
        }
    }
    std::process::exit(i32::from(failed));
}
