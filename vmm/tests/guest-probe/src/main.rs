//! `/init` of the VMM boot test's initramfs. Runs as PID 1 in the guest, checks each
//! device and prints one `HULL-PROBE-*` line per step for the host test to assert,
//! then reboots (the VMM sees the i8042 reset and exits).
//!
//! Data patterns are shared with the host test: byte `i` of stream `seed` is
//! `pattern(seed, i)`, so both ends verify without hashing libraries.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::io::FromRawFd;

const BOOT_MARK_PORT: u16 = 0x3f0;
const BOOT_MARK_MAGIC: u8 = 0x68;
const HOST_CID: u32 = 2;
const HOST_PORT: u32 = 5000;
const GUEST_PORT: u32 = 1234;
const STREAM_LEN: usize = 1 << 20;
const DISK_RO_SEED: u8 = 9;
const DISK_RW_SEED: u8 = 10;

fn pattern(seed: u8, i: usize) -> u8 {
    ((i % 251) as u8)
        .wrapping_mul(7)
        .wrapping_add(seed)
        .rotate_left((i / 251 % 8) as u32)
}

fn say(line: &str) {
    let mut out = std::io::stdout();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Writes the boot mark. Needs `ioperm(2)`, which the guest kernel only has with
/// `CONFIG_X86_IOPL_IOPERM`; without it the mark is reported unavailable.
fn mark_boot() {
    // SAFETY: ioperm grants this process access to one I/O port; then a single `out`
    // to that port. PID 1 runs as root in the guest.
    unsafe {
        if libc::ioperm(u64::from(BOOT_MARK_PORT), 1, 1) != 0 {
            let err = std::io::Error::last_os_error();
            return say(&format!("HULL-PROBE-MARK unavailable (ioperm: {err})"));
        }
        std::arch::asm!("out dx, al", in("dx") BOOT_MARK_PORT, in("al") BOOT_MARK_MAGIC);
    }
    say("HULL-PROBE-MARK sent");
}

fn mount(src: &str, target: &str, fstype: &str) {
    let _ = std::fs::create_dir_all(target);
    let c = |s: &str| std::ffi::CString::new(s).unwrap();
    let (src, target, fstype) = (c(src), c(target), c(fstype));
    // SAFETY: valid NUL-terminated strings, null data.
    unsafe {
        libc::mount(
            src.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
}

fn check_disks() -> Result<(), String> {
    let ro = File::open("/dev/vda").map_err(|e| format!("open vda: {e}"))?;
    let mut buf = vec![0u8; 65536];
    ro.read_exact_at(&mut buf, 0)
        .map_err(|e| format!("read vda: {e}"))?;
    if buf
        .iter()
        .enumerate()
        .any(|(i, b)| *b != pattern(DISK_RO_SEED, i))
    {
        return Err("vda content differs".into());
    }
    if OpenOptions::new()
        .write(true)
        .open("/dev/vda")
        .and_then(|f| f.write_all_at(&[0; 512], 0))
        .is_ok()
    {
        return Err("write to read-only vda succeeded".into());
    }
    let rw = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/vdb")
        .map_err(|e| format!("open vdb: {e}"))?;
    let data: Vec<u8> = (0..4096).map(|i| pattern(DISK_RW_SEED, i)).collect();
    rw.write_all_at(&data, 4096)
        .map_err(|e| format!("write vdb: {e}"))?;
    rw.sync_all().map_err(|e| format!("sync vdb: {e}"))?;
    Ok(())
}

fn check_rng() -> Result<(), String> {
    let current =
        std::fs::read_to_string("/sys/class/misc/hw_random/rng_current").unwrap_or_default();
    if !current.starts_with("virtio_rng") {
        return Err(format!("rng_current is {current:?}"));
    }
    let mut buf = [0u8; 64];
    File::open("/dev/hwrng")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(|e| format!("read hwrng: {e}"))?;
    if buf == [0u8; 64] {
        return Err("hwrng returned zeros".into());
    }
    Ok(())
}

fn vsock_socket() -> Result<File, String> {
    // SAFETY: plain socket(2); the fd is owned by the returned File.
    let fd = unsafe { libc::socket(libc::AF_VSOCK, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(format!("socket: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: fd is a fresh socket nobody else owns.
    Ok(unsafe { File::from_raw_fd(fd) })
}

fn vsock_addr(cid: u32, port: u32) -> libc::sockaddr_vm {
    // SAFETY: sockaddr_vm is plain data; zero is valid.
    let mut addr: libc::sockaddr_vm = unsafe { std::mem::zeroed() };
    addr.svm_family = libc::AF_VSOCK as libc::sa_family_t;
    addr.svm_cid = cid;
    addr.svm_port = port;
    addr
}

const ADDR_LEN: libc::socklen_t = std::mem::size_of::<libc::sockaddr_vm>() as libc::socklen_t;

fn send_pattern(stream: &mut File, seed: u8) -> Result<(), String> {
    let data: Vec<u8> = (0..STREAM_LEN).map(|i| pattern(seed, i)).collect();
    stream.write_all(&data).map_err(|e| format!("send: {e}"))
}

fn recv_pattern(stream: &mut File, seed: u8) -> Result<(), String> {
    let mut data = vec![0u8; STREAM_LEN];
    stream
        .read_exact(&mut data)
        .map_err(|e| format!("recv: {e}"))?;
    match data
        .iter()
        .enumerate()
        .position(|(i, b)| *b != pattern(seed, i))
    {
        Some(at) => Err(format!("byte {at} of stream {seed} differs")),
        None => Ok(()),
    }
}

fn vsock_to_host() -> Result<(), String> {
    let mut s = vsock_socket()?;
    let addr = vsock_addr(HOST_CID, HOST_PORT);
    // SAFETY: valid socket and address of ADDR_LEN bytes.
    let rc = unsafe {
        libc::connect(
            std::os::unix::io::AsRawFd::as_raw_fd(&s),
            (&addr as *const libc::sockaddr_vm).cast(),
            ADDR_LEN,
        )
    };
    if rc != 0 {
        return Err(format!("connect: {}", std::io::Error::last_os_error()));
    }
    send_pattern(&mut s, 1)?;
    recv_pattern(&mut s, 2)
}

fn vsock_from_host() -> Result<(), String> {
    let l = vsock_socket()?;
    let fd = std::os::unix::io::AsRawFd::as_raw_fd(&l);
    let addr = vsock_addr(libc::VMADDR_CID_ANY, GUEST_PORT);
    // SAFETY: valid socket and address; listen/accept on it.
    let mut s = unsafe {
        if libc::bind(fd, (&addr as *const libc::sockaddr_vm).cast(), ADDR_LEN) != 0
            || libc::listen(fd, 1) != 0
        {
            return Err(format!("bind/listen: {}", std::io::Error::last_os_error()));
        }
        say("HULL-PROBE-LISTENING");
        let c = libc::accept4(
            fd,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_CLOEXEC,
        );
        if c < 0 {
            return Err(format!("accept: {}", std::io::Error::last_os_error()));
        }
        File::from_raw_fd(c)
    };
    recv_pattern(&mut s, 3)?;
    send_pattern(&mut s, 4)
}

fn step(name: &str, result: Result<(), String>) {
    match result {
        Ok(()) => say(&format!("HULL-PROBE-{name} ok")),
        Err(e) => say(&format!("HULL-PROBE-FAIL {name}: {e}")),
    }
}

fn main() {
    mark_boot();
    mount("devtmpfs", "/dev", "devtmpfs");
    mount("proc", "/proc", "proc");
    mount("sysfs", "/sys", "sysfs");
    let uptime = std::fs::read_to_string("/proc/uptime").unwrap_or_default();
    say(&format!(
        "HULL-PROBE-UP uptime={}",
        uptime.split(' ').next().unwrap_or("?")
    ));
    step("BLK", check_disks());
    step("RNG", check_rng());
    step("VSOCK-OUT", vsock_to_host());
    step("VSOCK-IN", vsock_from_host());
    say("HULL-PROBE-DONE");
    // SAFETY: sync and reboot as PID 1.
    unsafe {
        libc::sync();
        libc::reboot(libc::RB_AUTOBOOT);
    }
}
