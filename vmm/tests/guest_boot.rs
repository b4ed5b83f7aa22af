//! Boots hull's guest kernel with the VMM and checks every device from inside.
//!
//! The initramfs's `/init` is `guest-probe` (see `tests/guest-probe`): it marks the
//! boot, reads a read-only virtio-blk disk and fails to write it, writes a second
//! disk, reads virtio-rng, sends and receives 1 MiB over vsock in each direction
//! (guest-initiated to `<uds>_5000`, host-initiated with `CONNECT 1234`), then
//! reboots. The host side checks the data, the disks, the console and the exit.
//!
//! It needs a `/dev/kvm` that boots Linux, so it is `#[ignore]`d in host test runs and
//! run by `vmm/tests/lab/boot.sh`, which builds the inputs and passes them as
//! `HULL_GUEST_KERNEL` and `HULL_GUEST_PROBE` (in the lab, or directly on hardware KVM).

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

const STREAM_LEN: usize = 1 << 20;
const DISK_LEN: usize = 65536;
const TIMEOUT: Duration = Duration::from_secs(240);

fn pattern(seed: u8, i: usize) -> u8 {
    ((i % 251) as u8)
        .wrapping_mul(7)
        .wrapping_add(seed)
        .rotate_left((i / 251 % 8) as u32)
}

fn stream(seed: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| pattern(seed, i)).collect()
}

fn input(var: &str) -> PathBuf {
    let path = std::env::var_os(var)
        .unwrap_or_else(|| panic!("{var} is not set: run this test through vmm/tests/lab/boot.sh"));
    PathBuf::from(path)
}

fn make_initramfs(dir: &Path, probe: &Path) -> PathBuf {
    let root = dir.join("initramfs");
    fs::create_dir_all(&root).unwrap();
    fs::copy(probe, root.join("init")).unwrap();
    fs::set_permissions(root.join("init"), fs::Permissions::from_mode(0o755)).unwrap();
    let out = dir.join("initramfs.cpio");
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "cd '{}' && echo init | cpio -o -H newc --quiet > '{}'",
            root.display(),
            out.display()
        ))
        .status()
        .unwrap();
    assert!(status.success(), "cpio failed");
    out
}

fn read_pattern(s: &mut UnixStream, seed: u8) -> Result<(), String> {
    let mut data = vec![0u8; STREAM_LEN];
    s.read_exact(&mut data)
        .map_err(|e| format!("read stream {seed}: {e}"))?;
    match data.iter().enumerate().position(|(i, b)| *b != pattern(seed, i)) {
        Some(at) => Err(format!("stream {seed} differs at byte {at}")),
        None => Ok(()),
    }
}

/// Accepts the guest's connection to host port 5000: reads stream 1, sends stream 2.
fn guest_initiated_peer(listener: UnixListener, deadline: Instant) -> Result<(), String> {
    listener.set_nonblocking(true).unwrap();
    let mut s = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(_) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("guest never connected to port 5000: {e}")),
        }
    };
    s.set_nonblocking(false).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    read_pattern(&mut s, 1)?;
    s.write_all(&stream(2, STREAM_LEN))
        .map_err(|e| format!("write stream 2: {e}"))
}

fn try_host_connect(uds: &Path) -> Option<UnixStream> {
    let mut s = UnixStream::connect(uds).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"CONNECT 1234\n").ok()?;
    let mut line = String::new();
    BufReader::new(s.try_clone().ok()?).read_line(&mut line).ok()?;
    line.starts_with("OK ").then_some(s)
}

/// Connects to the guest's port 1234 (retrying until it listens): sends stream 3,
/// reads stream 4.
fn host_initiated_peer(uds: PathBuf, deadline: Instant) -> Result<(), String> {
    let mut s = loop {
        if let Some(s) = try_host_connect(&uds) {
            break s;
        }
        if Instant::now() > deadline {
            return Err("guest never accepted CONNECT 1234".into());
        }
        thread::sleep(Duration::from_millis(50));
    };
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.write_all(&stream(3, STREAM_LEN))
        .map_err(|e| format!("write stream 3: {e}"))?;
    read_pattern(&mut s, 4)
}

fn wait(child: &mut Child, deadline: Instant) -> Option<std::process::ExitStatus> {
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
#[ignore = "boots Linux: needs a /dev/kvm that runs a normal guest; run by vmm/tests/lab/boot.sh"]
fn guest_boots_uses_block_vsock_rng_and_reboots() {
    let (kernel, probe) = (input("HULL_GUEST_KERNEL"), input("HULL_GUEST_PROBE"));
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).unwrap();
    let initramfs = make_initramfs(dir.path(), &probe);
    let (base, upper) = (dir.path().join("base.img"), dir.path().join("upper.img"));
    fs::write(&base, stream(9, DISK_LEN)).unwrap();
    fs::write(&upper, vec![0u8; DISK_LEN]).unwrap();
    let (uds, console) = (dir.path().join("v.sock"), dir.path().join("console.log"));
    let deadline = Instant::now() + TIMEOUT;
    let listener = UnixListener::bind(dir.path().join("v.sock_5000")).unwrap();
    let out_peer = thread::spawn(move || guest_initiated_peer(listener, deadline));
    let started = Instant::now();
    let mut vmm = Command::new(env!("CARGO_BIN_EXE_vmm"))
        .args([
            "--kernel",
            kernel.to_str().unwrap(),
            "--initramfs",
            initramfs.to_str().unwrap(),
        ])
        .args(["--memory", "256", "--vcpus", "2", "--timings"])
        .args([
            "--disk",
            &format!("{},ro", base.display()),
            "--disk",
            upper.to_str().unwrap(),
        ])
        .args([
            "--vsock-uds",
            uds.to_str().unwrap(),
            "--console",
            console.to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let in_peer = thread::spawn(move || host_initiated_peer(uds, deadline));
    let status = wait(&mut vmm, deadline);
    let mut stderr = String::new();
    vmm.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    let console_text = fs::read_to_string(&console).unwrap_or_default();
    let report = format!("--- vmm stderr ---\n{stderr}\n--- console ---\n{console_text}");
    let status = status.unwrap_or_else(|| panic!("vmm did not exit within {TIMEOUT:?}\n{report}"));
    println!(
        "vmm ran {:?}; {}",
        started.elapsed(),
        stderr.lines().rfind(|l| l.starts_with("vmm-timings")).unwrap_or("")
    );

    if let Some(exits) = stderr.lines().find(|l| l.starts_with("vmm-exits")) {
        println!("{exits}");
    }
    if let Some(up) = console_text.lines().find(|l| l.starts_with("HULL-PROBE-UP")) {
        println!("guest: {up} (seconds of guest uptime when /init started)");
    }
    assert!(status.success(), "vmm exit {status}\n{report}");
    assert!(stderr.contains("vmm: guest requested reset"), "{report}");
    if console_text.contains("HULL-PROBE-MARK sent") {
        assert!(
            stderr.contains("guest_init_us="),
            "boot mark sent but not recorded\n{report}"
        );
    } else {
        assert!(console_text.contains("HULL-PROBE-MARK unavailable"), "{report}");
        println!("NOTE: boot mark not exercised: the guest kernel has no ioperm(2) (CONFIG_X86_IOPL_IOPERM)");
    }
    for marker in [
        "HULL-PROBE-UP",
        "HULL-PROBE-BLK ok",
        "HULL-PROBE-RNG ok",
        "HULL-PROBE-VSOCK-OUT ok",
        "HULL-PROBE-VSOCK-IN ok",
        "HULL-PROBE-DONE",
    ] {
        assert!(console_text.contains(marker), "missing {marker}\n{report}");
    }
    assert!(!console_text.contains("HULL-PROBE-FAIL"), "{report}");
    assert_eq!(out_peer.join().unwrap(), Ok(()), "guest-initiated vsock\n{report}");
    assert_eq!(in_peer.join().unwrap(), Ok(()), "host-initiated vsock\n{report}");
    assert_eq!(
        fs::read(&base).unwrap(),
        stream(9, DISK_LEN),
        "read-only base disk changed"
    );
    assert_eq!(
        &fs::read(&upper).unwrap()[4096..8192],
        &stream(10, 4096)[..],
        "writable disk lacks the guest's write"
    );
}
