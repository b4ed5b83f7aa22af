//! The `vmm` binary end to end on /dev/kvm, with a tiny ELF "kernel" instead of Linux
//! (so it also runs on PVM hosts): argument errors, kernel load errors, the whole boot
//! recipe with every device attached, seccomp and Landlock on, the boot mark and
//! `--timings`, i8042 reset, and SIGTERM as the host's stop request.
//!
//! Without /dev/kvm the KVM tests print `SKIPPED <test>: <reason>`, append it to
//! `$HULL_SKIP_LOG`, and fail under `CI=true`.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const LOAD: u64 = 0x20_0000;

fn kvm_available(test: &str) -> bool {
    if Path::new("/dev/kvm").exists() {
        if let Err(e) = fs::OpenOptions::new().read(true).write(true).open("/dev/kvm") {
            panic!("/dev/kvm exists but cannot be opened read-write: {e}");
        }
        return true;
    }
    let line = format!("{test}: /dev/kvm does not exist");
    println!("SKIPPED {line}");
    if let Ok(log) = std::env::var("HULL_SKIP_LOG") {
        let mut f = fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
        writeln!(f, "{line}").unwrap();
    }
    assert_ne!(
        std::env::var("CI").as_deref(),
        Ok("true"),
        "skipped in CI (CI=true): {line}"
    );
    false
}

/// A minimal ELF64 executable with one PT_LOAD segment of `code` at `LOAD`.
fn elf(code: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 0x1000];
    f[..16].copy_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    f[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    f[18..20].copy_from_slice(&0x3eu16.to_le_bytes()); // x86_64
    f[20..24].copy_from_slice(&1u32.to_le_bytes());
    f[24..32].copy_from_slice(&LOAD.to_le_bytes()); // entry
    f[32..40].copy_from_slice(&64u64.to_le_bytes()); // phoff
    f[52..54].copy_from_slice(&64u16.to_le_bytes()); // ehsize
    f[54..56].copy_from_slice(&56u16.to_le_bytes()); // phentsize
    f[56..58].copy_from_slice(&1u16.to_le_bytes()); // phnum
    let ph = &mut f[64..120];
    ph[0..4].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    ph[4..8].copy_from_slice(&5u32.to_le_bytes()); // R+X
    ph[8..16].copy_from_slice(&0x1000u64.to_le_bytes()); // offset
    ph[16..24].copy_from_slice(&LOAD.to_le_bytes()); // vaddr
    ph[24..32].copy_from_slice(&LOAD.to_le_bytes()); // paddr
    ph[32..40].copy_from_slice(&(code.len() as u64).to_le_bytes());
    ph[40..48].copy_from_slice(&(code.len() as u64).to_le_bytes());
    ph[48..56].copy_from_slice(&0x1000u64.to_le_bytes());
    f.extend_from_slice(code);
    f
}

/// Long-mode code: "E" on COM1, the boot mark, then either reset or spin.
fn payload(reset: bool) -> Vec<u8> {
    #[rustfmt::skip]
    let mut code = vec![
        0x66, 0xba, 0xf8, 0x03, // mov dx, 0x3f8
        0xb0, b'E', 0xee,       // mov al, 'E'; out dx, al
        0x66, 0xba, 0xf0, 0x03, // mov dx, 0x3f0
        0xb0, 0x68, 0xee,       // mov al, 0x68; out dx, al
    ];
    if reset {
        code.extend_from_slice(&[0xb0, 0xfe, 0xe6, 0x64]); // mov al, 0xfe; out 0x64, al
    }
    code.extend_from_slice(&[0xeb, 0xfe]); // jmp $
    code
}

struct Run {
    dir: tempfile::TempDir,
}

impl Run {
    fn new() -> Run {
        Run {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, bytes: &[u8]) -> String {
        fs::write(self.path(name), bytes).unwrap();
        self.path(name).to_str().unwrap().to_string()
    }

    fn command(&self, kernel: &str) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vmm"));
        let disk = self.write("base.img", &[0x11; 8192]);
        let upper = self.write("upper.img", &[0; 4096]);
        let console = self.path("console.log");
        let uds = self.path("v.sock");
        cmd.args(["--kernel", kernel, "--memory", "64", "--vcpus", "2", "--timings"])
            .args(["--disk", &format!("{disk},ro"), "--disk", &upper])
            .args(["--vsock-uds", uds.to_str().unwrap()])
            .args(["--console", console.to_str().unwrap()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    fn console(&self) -> String {
        fs::read_to_string(self.path("console.log")).unwrap_or_default()
    }
}

/// The soft and hard values of the limit `name` of process `pid` (`/proc/PID/limits`).
fn limit(pid: u32, name: &str) -> Vec<String> {
    let limits = fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_else(|| panic!("no {name:?} in {limits}"));
    line[name.len()..]
        .split_whitespace()
        .take(2)
        .map(str::to_owned)
        .collect()
}

fn wait_with_deadline(mut child: Child, limit: Duration) -> Output {
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("vmm did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn vmm_usage_errors_exit_2_with_usage() {
    let out = Command::new(env!("CARGO_BIN_EXE_vmm"))
        .arg("--frobnicate")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown option --frobnicate") && err.contains("usage: vmm"),
        "{err}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_vmm")).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn vmm_reports_a_kernel_that_is_not_elf() {
    if !kvm_available("vmm_reports_a_kernel_that_is_not_elf") {
        return;
    }
    let run = Run::new();
    let kernel = run.write("kernel", &[0u8; 4096]);
    let out = run.command(&kernel).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot load the kernel image"), "{err}");
}

#[test]
fn vmm_rejects_a_disk_whose_size_is_not_4k_aligned() {
    if !kvm_available("vmm_rejects_a_disk_whose_size_is_not_4k_aligned") {
        return;
    }
    let run = Run::new();
    let kernel = run.write("kernel", &elf(&payload(true)));
    let odd = run.write("odd.img", &[0; 1000]);
    let out = run.command(&kernel).args(["--disk", &odd]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a multiple of 4096"));
}

#[test]
fn vmm_boots_confined_marks_init_and_exits_on_i8042_reset() {
    if !kvm_available("vmm_boots_confined_marks_init_and_exits_on_i8042_reset") {
        return;
    }
    let run = Run::new();
    let kernel = run.write("kernel", &elf(&payload(true)));
    let out = wait_with_deadline(run.command(&kernel).spawn().unwrap(), Duration::from_secs(60));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("vmm: guest requested reset"), "{err}");
    let last = err.lines().rfind(|l| l.starts_with("vmm-timings")).unwrap_or_default();
    for field in [
        "memory_us=",
        "vm_us=",
        "devices_us=",
        "kernel_us=",
        "guest_init_us=",
        "exit_us=",
        "exit=reset",
    ] {
        assert!(last.contains(field), "{field} missing in {last:?}");
    }
    assert_eq!(run.console(), "E");
    assert_eq!(fs::read(run.path("base.img")).unwrap(), vec![0x11; 8192]);
}

#[test]
fn vmm_stops_on_sigterm_and_reports_the_signal() {
    if !kvm_available("vmm_stops_on_sigterm_and_reports_the_signal") {
        return;
    }
    let run = Run::new();
    let kernel = run.write("kernel", &elf(&payload(false)));
    let mut child = run.command(&kernel).args(["--console-limit", "65536"]).spawn().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let mut seen = Vec::new();
    let mut byte = [0u8; 1];
    while !String::from_utf8_lossy(&seen).contains("guest_init_us=") {
        assert_eq!(stderr.read(&mut byte).unwrap(), 1, "vmm exited before the boot mark");
        seen.push(byte[0]);
    }
    // SECURITY.md: the running VMM holds its resource limits (soft and hard): 512
    // descriptors, and files no larger than its largest writable disk (4 KiB here) or
    // its console cap, plus one byte.
    assert_eq!(limit(child.id(), "Max open files"), ["512", "512"]);
    assert_eq!(limit(child.id(), "Max file size"), ["65537", "65537"]);
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = wait_with_deadline(child, Duration::from_secs(30));
    stderr.read_to_end(&mut seen).unwrap();
    let err = String::from_utf8_lossy(&seen);
    assert_eq!(out.status.code(), Some(128 + libc::SIGTERM), "{err}");
    assert!(
        err.contains("stopped by signal 15") && err.contains("exit=signal"),
        "{err}"
    );
}
