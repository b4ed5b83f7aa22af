//! KVM smoke test: the smallest real guest, run straight on `/dev/kvm`.
//!
//! A 20-byte real-mode payload adds two registers, writes the result and a newline to
//! the serial port (port I/O), stores to an address outside guest RAM (MMIO), reads a
//! byte back from the port and stores it too, then halts.  The test checks every exit
//! in order.  It needs no Linux guest, so it also runs on hosts whose KVM cannot boot
//! one (a PVM host, for example).
//!
//! When `/dev/kvm` does not exist the test prints `SKIPPED`, appends a line to the
//! file named by `HULL_SKIP_LOG` (the test runner counts them), and fails outright when
//! `CI=true` or `HULL_REQUIRE_KVM=1`.  When `/dev/kvm` exists but cannot be used, it
//! fails.

use std::io::Write;
use std::path::Path;

use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::{Kvm, VcpuExit};

const GUEST_CODE_ADDR: u64 = 0x1000;
const GUEST_MEM_SIZE: usize = 0x1000;
const SERIAL_PORT: u16 = 0x3f8;
const MMIO_ADDR: u64 = 0x8000;
const VALUE_FROM_HOST: u8 = 0x42;

/// Real-mode payload, loaded at 0x1000 and entered with AX=2, BX=3.
#[rustfmt::skip]
const PAYLOAD: [u8; 20] = [
    0xba, 0xf8, 0x03, // mov dx, 0x3f8
    0x00, 0xd8, //       add al, bl
    0x04, b'0', //       add al, '0'
    0xee, //             out dx, al        -> "5"
    0xb0, b'\n', //      mov al, '\n'
    0xee, //             out dx, al        -> "\n"
    0xa2, 0x00, 0x80, // mov [0x8000], al  -> MMIO write of '\n'
    0xec, //             in al, dx         <- VALUE_FROM_HOST
    0xa2, 0x00, 0x80, // mov [0x8000], al  -> MMIO write of VALUE_FROM_HOST
    0xf4, //             hlt
    0xf4, //             hlt (never reached)
];

/// Anonymous, page-aligned host memory backing the guest's RAM.
struct GuestRam {
    addr: *mut u8,
    len: usize,
}

impl GuestRam {
    fn new(len: usize) -> std::io::Result<Self> {
        // SAFETY: an anonymous private mapping with no address hint; the result is
        // checked against MAP_FAILED before use.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(GuestRam { addr: addr.cast(), len })
    }

    fn write(&mut self, offset: usize, bytes: &[u8]) {
        assert!(offset + bytes.len() <= self.len, "payload outside guest RAM");
        // SAFETY: the range was just checked to lie inside the mapping, which this
        // struct owns for its whole life; nothing else aliases it yet.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.addr.add(offset), bytes.len()) }
    }
}

impl Drop for GuestRam {
    fn drop(&mut self) {
        // SAFETY: addr/len are exactly the mapping made in `new`, unmapped once here.
        unsafe { libc::munmap(self.addr.cast(), self.len) };
    }
}

/// Opens `/dev/kvm`, or returns None after recording a skip when the host has none.
fn open_kvm_or_skip(test: &str) -> Option<Kvm> {
    if !Path::new("/dev/kvm").exists() {
        let required =
            std::env::var("CI").is_ok_and(|v| v == "true") || std::env::var("HULL_REQUIRE_KVM").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "{test}: /dev/kvm does not exist, and KVM is required here (CI=true or HULL_REQUIRE_KVM=1)"
        );
        println!("SKIPPED {test}: /dev/kvm does not exist");
        if let Ok(log) = std::env::var("HULL_SKIP_LOG") {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .unwrap_or_else(|e| panic!("cannot append to HULL_SKIP_LOG={log}: {e}"));
            writeln!(f, "{test}: /dev/kvm does not exist").expect("write HULL_SKIP_LOG");
        }
        return None;
    }
    // Present but unusable (no permission, broken module) is a failure, never a skip.
    match Kvm::new() {
        Ok(kvm) => Some(kvm),
        Err(e) => panic!("{test}: /dev/kvm exists but cannot be opened: {e}"),
    }
}

#[test]
fn kvm_smoke_real_mode_payload_does_port_io_mmio_and_halts() {
    let Some(kvm) = open_kvm_or_skip("kvm_smoke_real_mode_payload_does_port_io_mmio_and_halts") else {
        return;
    };
    assert_eq!(kvm.get_api_version(), 12, "KVM API version");

    let vm = kvm.create_vm().expect("KVM_CREATE_VM");
    let mut ram = GuestRam::new(GUEST_MEM_SIZE).expect("mmap guest RAM");
    ram.write(0, &PAYLOAD);
    let region = kvm_userspace_memory_region {
        slot: 0,
        guest_phys_addr: GUEST_CODE_ADDR,
        memory_size: GUEST_MEM_SIZE as u64,
        userspace_addr: ram.addr as u64,
        flags: 0,
    };
    // SAFETY: `ram` is a live mapping of `memory_size` bytes that outlives `vm` (it is
    // declared first, so it is dropped after the VM and its vCPU).
    unsafe { vm.set_user_memory_region(region) }.expect("KVM_SET_USER_MEMORY_REGION");

    let mut vcpu = vm.create_vcpu(0).expect("KVM_CREATE_VCPU");
    let mut sregs = vcpu.get_sregs().expect("KVM_GET_SREGS");
    sregs.cs.base = 0;
    sregs.cs.selector = 0;
    vcpu.set_sregs(&sregs).expect("KVM_SET_SREGS");
    let mut regs = vcpu.get_regs().expect("KVM_GET_REGS");
    regs.rip = GUEST_CODE_ADDR;
    regs.rax = 2;
    regs.rbx = 3;
    regs.rflags = 2; // bit 1 is reserved and must be set
    vcpu.set_regs(&regs).expect("KVM_SET_REGS");

    let mut serial = Vec::new();
    let mut mmio = Vec::new();
    let mut port_reads = 0;
    let mut halted = false;
    for _ in 0..16 {
        match vcpu.run().expect("KVM_RUN") {
            VcpuExit::IoOut(port, data) => {
                assert_eq!(port, SERIAL_PORT, "port of the OUT");
                serial.extend_from_slice(data);
            }
            VcpuExit::IoIn(port, data) => {
                assert_eq!(port, SERIAL_PORT, "port of the IN");
                assert_eq!(data.len(), 1, "width of the IN");
                data[0] = VALUE_FROM_HOST;
                port_reads += 1;
            }
            VcpuExit::MmioWrite(addr, data) => {
                assert_eq!(addr, MMIO_ADDR, "address of the MMIO write");
                mmio.extend_from_slice(data);
            }
            VcpuExit::Hlt => {
                halted = true;
                break;
            }
            other => panic!("unexpected vCPU exit: {other:?}"),
        }
    }
    assert_eq!(serial, b"5\n", "bytes written to the serial port");
    assert_eq!(port_reads, 1, "port reads");
    assert_eq!(mmio, [b'\n', VALUE_FROM_HOST], "bytes written over MMIO");
    assert!(halted, "the guest did not halt within 16 exits");
    let regs = vcpu.get_regs().expect("KVM_GET_REGS after HLT");
    assert_eq!(regs.rip, GUEST_CODE_ADDR + PAYLOAD.len() as u64 - 1, "RIP after HLT");
    assert_eq!(regs.rax & 0xff, u64::from(VALUE_FROM_HOST), "AL after the IN");
}
