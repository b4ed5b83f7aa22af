//! The container's root: base disk, writable layer and overlayfs, then the kernel
//! filesystems and the files the runtime owns (`/etc/hosts`, ...).
//!
//! Paths inside the container are resolved with `openat2(RESOLVE_IN_ROOT)`, so a
//! symlink planted by the image (`/etc -> /`, `/etc/hosts -> /proc/...`) is resolved
//! inside the container root and never reaches the agent's own files.

use std::ffi::CString;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Component, Path};

use guest_agent::mounts::{self, MountArg};
use guest_agent::protocol::{valid_host_name, HostEntry};

use super::sys::{self, bind, cstring, mknod, mount};

/// Where the container root is assembled in the agent's own (initramfs) tree.
pub const ROOT: &str = "/mnt/root";
/// The image's read-only tree (the base disk).
pub const LOWER: &str = "/mnt/lower";
/// The writable disk; overlayfs's upper directory is `upper` in it.
pub const RW: &str = "/mnt/rw";
const BASE_DISK: &str = "/dev/vda";
const UPPER_DISK: &str = "/dev/vdb";

/// What the host put on the kernel command line for the agent.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BootConfig {
    /// The writable layer is a RAM-backed tmpfs instead of the second disk.
    pub tmpfs_upper: bool,
    pub dns: Vec<String>,
    /// eth0's address and route (`hull.net=`, `hull.mtu=`); none: loopback only.
    pub net: Option<super::net::NetConfig>,
}

impl BootConfig {
    pub fn from_cmdline(cmdline: &str) -> BootConfig {
        let mut config = BootConfig::default();
        let value = |key: &str| {
            cmdline
                .split_ascii_whitespace()
                .find_map(|w| w.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
        };
        config.net = value("hull.net").and_then(|n| super::net::NetConfig::parse(n, value("hull.mtu")));
        for word in cmdline.split_ascii_whitespace() {
            match word.split_once('=') {
                Some(("hull.upper", v)) => config.tmpfs_upper = v == "tmpfs",
                Some(("hull.dns", v)) => {
                    config.dns = v.split(',').filter(|s| valid_address(s)).map(String::from).collect()
                }
                _ => {}
            }
        }
        config
    }
}

fn valid_hostname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

fn valid_address(addr: &str) -> bool {
    !addr.is_empty() && addr.len() <= 45 && addr.bytes().all(|b| b.is_ascii_hexdigit() || b == b'.' || b == b':')
}

/// Mounts the agent's own kernel filesystems (the initramfs has only empty dirs).
pub fn mount_agent_filesystems() -> io::Result<()> {
    let nosuid = libc::MS_NOSUID | libc::MS_NOEXEC | libc::MS_NODEV;
    for dir in ["/proc", "/sys", "/dev", "/mnt/lower", "/mnt/rw", "/mnt/root", "/tmp"] {
        fs::create_dir_all(dir)?;
    }
    mount("proc", Path::new("/proc"), "proc", nosuid, None).map_err(ctx("mount /proc"))?;
    mount("sysfs", Path::new("/sys"), "sysfs", nosuid, None).map_err(ctx("mount /sys"))?;
    // The kernel may already have mounted devtmpfs (CONFIG_DEVTMPFS_MOUNT).
    match mount("devtmpfs", Path::new("/dev"), "devtmpfs", libc::MS_NOSUID, None) {
        Err(e) if e.raw_os_error() != Some(libc::EBUSY) => return Err(e).map_err(ctx("mount /dev")),
        _ => {}
    }
    fs::create_dir_all("/dev/pts")?;
    mount(
        "devpts",
        Path::new("/dev/pts"),
        "devpts",
        libc::MS_NOSUID | libc::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620,gid=5"),
    )
    .map_err(ctx("mount /dev/pts"))
}

fn ctx(what: &'static str) -> impl Fn(io::Error) -> io::Error {
    move |e| io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// Assembles the container root at [`ROOT`].
pub fn prepare(config: &BootConfig) -> io::Result<()> {
    mount(BASE_DISK, Path::new(LOWER), "erofs", libc::MS_RDONLY, None).map_err(ctx("mount base disk /dev/vda"))?;
    if config.tmpfs_upper {
        mount("tmpfs", Path::new(RW), "tmpfs", 0, Some("mode=0755")).map_err(ctx("mount tmpfs upper"))?;
    } else {
        mount(UPPER_DISK, Path::new(RW), "ext4", 0, None).map_err(ctx("mount writable disk /dev/vdb"))?;
    }
    fs::create_dir_all(format!("{RW}/upper"))?;
    fs::create_dir_all(format!("{RW}/work"))?;
    mount_overlay().map_err(ctx("mount overlay"))?;
    mount_container_filesystems().map_err(ctx("container filesystems"))?;
    write_runtime_files(config).map_err(ctx("runtime files in /etc"))
}

/// What overlay2 users expect of the container root, beyond the defaults:
/// - `xino=on`: one inode number space, so `readdir`'s `d_ino` and `stat`'s `st_ino`
///   agree and no two files share an inode number (the layers' numbers get the
///   layer's index in their high bits);
/// - `redirect_dir=on`: `rename(2)` of a directory from the image works instead of
///   failing with `EXDEV` (`commit` packs such a directory whole: see `archive`);
/// - `index=on`: a file of the image with several hard links stays one inode when it
///   is copied up, so its links keep sharing data.
const OVERLAY_FEATURES: &str = "xino=on,redirect_dir=on,index=on";

fn mount_overlay() -> io::Result<()> {
    let options = format!("lowerdir={LOWER},upperdir={RW}/upper,workdir={RW}/work");
    let full = format!("{options},{OVERLAY_FEATURES}");
    match mount("overlay", Path::new(ROOT), "overlay", 0, Some(&full)) {
        // A writable layer made under other options (an index that names another
        // base disk) refuses them: keep the container usable with the defaults.
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ESTALE)) => {
            eprintln!("hull-agent: overlay with {OVERLAY_FEATURES} refused ({e}); mounting without them");
            mount("overlay", Path::new(ROOT), "overlay", 0, Some(&options))
        }
        other => other,
    }
}

/// `--read-only`: the container root's own mount becomes read-only; the mounts
/// below it (volumes, tmpfs, /dev, /dev/shm, /proc) keep their modes, as in Docker.
pub fn make_read_only() -> io::Result<()> {
    let flags = libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY;
    mount("none", Path::new(ROOT), "none", flags, None).map_err(ctx("remount the container root read-only"))
}

/// `--sysctl`: each key (dotted, checked by the host and again here) written under
/// the guest's `/proc/sys`.
pub fn write_sysctls(sysctls: &[(String, String)]) -> io::Result<()> {
    for (key, value) in sysctls {
        let valid = !key.is_empty()
            && key.split('.').all(|part| {
                !part.is_empty()
                    && part
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            });
        if !valid || value.contains('\0') {
            return Err(invalid("sysctl", key));
        }
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        fs::write(&path, value).map_err(|e| io::Error::new(e.kind(), format!("sysctl {key}={value}: {e}")))?;
    }
    Ok(())
}

/// Mounts every volume and tmpfs at its place in the container root (after
/// [`prepare`], so the runtime files are never written into a volume mounted on
/// /etc). The list comes from the host; it is checked first. A refused or failed
/// mount fails the container's start, naming the mount point.
pub fn mount_volumes(mounts: Vec<MountArg>) -> io::Result<()> {
    let mounts = mounts::validate_all(mounts).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    for m in &mounts {
        mount_one(m).map_err(|e| {
            let what = match m {
                MountArg::Shared { .. } => "volume",
                MountArg::Tmpfs { .. } => "tmpfs",
            };
            io::Error::new(e.kind(), format!("mount {what} on {}: {e}", m.target()))
        })?;
    }
    Ok(())
}

/// Creates the mount point inside the container root (a symlink planted by the image
/// resolves inside the root, never outside it) and mounts onto the directory found,
/// through its descriptor, so nothing is looked up twice.
fn mount_one(m: &MountArg) -> io::Result<()> {
    let root = open_root()?;
    mkdir_all_in_root(&root, m.target())?;
    let point = open_in_root(&root, m.target(), libc::O_PATH | libc::O_DIRECTORY, 0)?;
    let target = format!("/proc/self/fd/{}", point.as_raw_fd());
    let target = Path::new(&target);
    match m {
        MountArg::Shared { tag, read_only, .. } => {
            let ro = if *read_only { libc::MS_RDONLY } else { 0 };
            mount(tag, target, "virtiofs", libc::MS_NOSUID | libc::MS_NODEV | ro, None)
        }
        MountArg::Tmpfs { options, .. } => {
            let flag = |on: bool, f: libc::c_ulong| if on { f } else { 0 };
            let flags = flag(options.noexec, libc::MS_NOEXEC)
                | flag(options.nosuid, libc::MS_NOSUID)
                | flag(options.nodev, libc::MS_NODEV);
            let data = options.data();
            mount(
                "tmpfs",
                target,
                "tmpfs",
                flags,
                Some(&data).filter(|d| !d.is_empty()).map(|d| d.as_str()),
            )
        }
    }
}

fn mount_container_filesystems() -> io::Result<()> {
    let root = Path::new(ROOT);
    let nosuid = libc::MS_NOSUID | libc::MS_NOEXEC | libc::MS_NODEV;
    for dir in ["proc", "sys", "dev"] {
        real_dir(&root.join(dir))?;
    }
    mount("proc", &root.join("proc"), "proc", nosuid, None)?;
    mount("sysfs", &root.join("sys"), "sysfs", nosuid | libc::MS_RDONLY, None)?;
    // The container sees its own cgroup as the root of the hierarchy (sysfs is
    // read-only; its cgroup directory exists already).
    super::cgroup::prepare().map_err(ctx("container cgroup"))?;
    bind(Path::new(super::cgroup::CONTAINER), &root.join("sys/fs/cgroup"))?;
    let dev = root.join("dev");
    mount(
        "tmpfs",
        &dev,
        "tmpfs",
        libc::MS_NOSUID | libc::MS_NOEXEC,
        Some("mode=0755,size=65536k"),
    )?;
    for (name, major, minor) in [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ] {
        let path = dev.join(name);
        mknod(&path, libc::S_IFCHR | 0o666, major, minor)?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o666))?;
    }
    for (link, target) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("core", "/proc/kcore"),
    ] {
        symlink(target, dev.join(link))?;
    }
    fs::create_dir(dev.join("pts"))?;
    fs::create_dir(dev.join("shm"))?;
    bind(Path::new("/dev/pts"), &dev.join("pts"))?;
    mount(
        "shm",
        &dev.join("shm"),
        "tmpfs",
        nosuid,
        Some(&shm_options(DEFAULT_SHM_BYTES)),
    )?;
    Ok(())
}

/// Docker's `/dev/shm` size without `--shm-size`.
const DEFAULT_SHM_BYTES: u64 = 64 << 20;

fn shm_options(bytes: u64) -> String {
    format!("mode=1777,size={bytes}")
}

/// Gives the container's `/dev/shm` its size (`--shm-size`).
pub fn resize_shm(bytes: u64) -> io::Result<()> {
    let flags = libc::MS_REMOUNT | libc::MS_NOSUID | libc::MS_NOEXEC | libc::MS_NODEV;
    let shm = Path::new(ROOT).join("dev/shm");
    mount("shm", &shm, "tmpfs", flags, Some(&shm_options(bytes))).map_err(ctx("resize /dev/shm"))
}

/// Makes `path` (a direct child of the root) a real directory: an image that ships
/// `/proc` as a symlink or a file gets it replaced, so a mount never follows it.
fn real_dir(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => return Ok(()),
        Ok(m) if m.file_type().is_symlink() || m.is_file() => fs::remove_file(path)?,
        Ok(_) => fs::remove_file(path)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    fs::create_dir(path)
}

/// Hostname until the host configures the container (helper VMs keep it).
const DEFAULT_HOSTNAME: &str = "localhost";

fn write_runtime_files(config: &BootConfig) -> io::Result<()> {
    let root = open_root()?;
    let resolv: String = config.dns.iter().map(|ns| format!("nameserver {ns}\n")).collect();
    replace_file(&root, "etc/resolv.conf", resolv.as_bytes())?;
    write_hostname_files(&root, DEFAULT_HOSTNAME, &[])
}

/// `/etc/hosts`: localhost, the container's own name, then the `--add-host` lines.
fn hosts_file(hostname: &str, extra: &[HostEntry]) -> String {
    let mut hosts = format!("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n");
    for entry in extra {
        hosts.push_str(&format!("{}\t{}\n", entry.address, entry.name));
    }
    hosts
}

fn write_hostname_files(root: &OwnedFd, hostname: &str, extra: &[HostEntry]) -> io::Result<()> {
    replace_file(root, "etc/hostname", format!("{hostname}\n").as_bytes())?;
    replace_file(root, "etc/hosts", hosts_file(hostname, extra).as_bytes())?;
    sys::sethostname(hostname)
}

fn invalid(what: &str, value: &str) -> io::Error {
    let shown: String = value.chars().take(64).collect();
    io::Error::new(io::ErrorKind::InvalidInput, format!("invalid {what} {shown:?}"))
}

/// Gives the container the hostname and extra `/etc/hosts` lines the host sent
/// (checked here again): the UTS name, `/etc/hostname` and `/etc/hosts`, written
/// inside the root before any volume is mounted.
pub fn set_hostname(hostname: &str, extra: &[HostEntry]) -> io::Result<()> {
    if !valid_hostname(hostname) {
        return Err(invalid("hostname", hostname));
    }
    if let Some(bad) = extra.iter().find(|e| !valid_host_name(&e.name)) {
        return Err(invalid("extra host name", &bad.name));
    }
    write_hostname_files(&open_root()?, hostname, extra).map_err(ctx("runtime files in /etc"))
}

/// A descriptor of the container root, for lookups that stay inside it.
pub fn open_root() -> io::Result<OwnedFd> {
    Ok(File::open(ROOT)?.into())
}

/// openat2 with RESOLVE_IN_ROOT: `..` and absolute symlinks stop at `root`.
pub fn open_in_root(root: &OwnedFd, path: &str, flags: i32, mode: u32) -> io::Result<OwnedFd> {
    let path = cstring(path.trim_start_matches('/'))?;
    let path = if path.as_bytes().is_empty() {
        CString::new(".").unwrap_or_default()
    } else {
        path
    };
    // SAFETY: open_how is plain data; all-zero is valid.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.mode = u64::from(mode);
    how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: the path is NUL-terminated and `how` is a valid open_how of the size
    // passed; the kernel returns a new descriptor or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root.as_raw_fd(),
            path.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Reads a small file of the container (`/etc/passwd`); missing reads as empty.
pub fn read_in_root(root: &OwnedFd, path: &str, limit: u64) -> io::Result<String> {
    use std::io::Read;
    match open_in_root(root, path, libc::O_RDONLY, 0) {
        Ok(fd) => {
            let mut text = String::new();
            File::from(fd).take(limit).read_to_string(&mut text)?;
            Ok(text)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(e),
    }
}

/// Creates `path` and its parents inside the container root, as Docker does for a
/// missing working directory.
pub fn mkdir_all_in_root(root: &OwnedFd, path: &str) -> io::Result<()> {
    let mut prefix = String::new();
    for component in Path::new(path).components() {
        let Component::Normal(name) = component else { continue };
        let name = name
            .to_str()
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        let parent = open_in_root(root, &prefix, libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
        let cname = cstring(name)?;
        // SAFETY: valid descriptor and NUL-terminated name.
        if unsafe { libc::mkdirat(parent.as_raw_fd(), cname.as_ptr(), 0o755) } < 0 {
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::AlreadyExists {
                return Err(err);
            }
        }
        prefix.push('/');
        prefix.push_str(name);
    }
    Ok(())
}

/// Writes `path` as a fresh regular file, replacing whatever the image put there
/// (a symlink is removed, never followed).
fn replace_file(root: &OwnedFd, path: &str, contents: &[u8]) -> io::Result<()> {
    let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
    mkdir_all_in_root(root, dir)?;
    let dir = open_in_root(root, dir, libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
    let cname = cstring(name)?;
    // SAFETY: valid descriptor and NUL-terminated name; a missing file is fine.
    unsafe { libc::unlinkat(dir.as_raw_fd(), cname.as_ptr(), 0) };
    // SAFETY: as above; O_EXCL|O_NOFOLLOW creates a new regular file or fails.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            cname.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            0o644,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor we own.
    let mut file = unsafe { File::from_raw_fd(fd) };
    file.write_all(contents)
}

/// Before power-off: flush and detach the container's filesystems so the writable
/// disk is clean.
pub fn teardown() {
    let _ = sys::umount_detach(Path::new(ROOT));
    // SAFETY: sync has no preconditions.
    unsafe { libc::sync() };
    let _ = sys::umount_detach(Path::new(RW));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmdline_values_are_validated() {
        let c = BootConfig::from_cmdline("console=ttyS0 hull.upper=tmpfs hull.dns=10.0.2.3,::1");
        assert!(c.tmpfs_upper);
        assert_eq!(c.dns, vec!["10.0.2.3", "::1"]);
        let c = BootConfig::from_cmdline("hull.dns=evil\nx");
        assert!(c.dns.is_empty());
        assert!(!c.tmpfs_upper);
    }

    #[test]
    fn a_bad_hostname_from_the_host_is_refused_before_any_file_is_written() {
        for bad in ["", "a/b", "a b", "x\ny", &"h".repeat(64), "../etc"] {
            let err = set_hostname(bad, &[]).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{bad:?}: {err}");
        }
        for bad in ["", "a b", "a\0b", "x\ny", "-x", "a\tb", &"h".repeat(254)] {
            let entry = HostEntry {
                name: bad.into(),
                address: std::net::Ipv4Addr::new(10, 0, 2, 2),
            };
            let err = set_hostname("box", &[entry]).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{bad:?}: {err}");
        }
    }

    #[test]
    fn extra_hosts_follow_the_containers_own_names() {
        let extra = [
            HostEntry {
                name: "host.docker.internal".into(),
                address: std::net::Ipv4Addr::new(10, 0, 2, 2),
            },
            HostEntry {
                name: "db".into(),
                address: std::net::Ipv4Addr::new(192, 168, 1, 9),
            },
        ];
        let hosts = hosts_file("box", &extra);
        assert!(hosts.starts_with("127.0.0.1\tlocalhost\n"), "{hosts}");
        assert!(
            hosts.ends_with("127.0.1.1\tbox\n10.0.2.2\thost.docker.internal\n192.168.1.9\tdb\n"),
            "{hosts}"
        );
    }

    #[test]
    fn hostile_mount_lists_are_refused_before_anything_is_mounted() {
        for hostile in [
            MountArg::Shared {
                tag: "hullfs0".into(),
                read_only: true,
                target: "/../../etc".into(),
            },
            MountArg::Shared {
                tag: "../x".into(),
                read_only: false,
                target: "/data".into(),
            },
            MountArg::Tmpfs {
                target: "relative".into(),
                options: Default::default(),
            },
        ] {
            let err = mount_volumes(vec![hostile.clone()]).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{hostile:?}: {err}");
        }
    }
}
