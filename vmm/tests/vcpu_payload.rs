//! Runs tiny hand-assembled guests on /dev/kvm: the vCPU loop, port-I/O and MMIO
//! dispatch, the serial console, the boot mark, i8042 reset, and both boot entry
//! modes (PVH 32-bit and 64-bit long mode). These run on any host with /dev/kvm,
//! including PVM hosts that cannot boot Linux. Without /dev/kvm they print
//! `SKIPPED <test>: <reason>`, append it to `$HULL_SKIP_LOG`, and fail when `CI=true`;
//! a /dev/kvm that exists but cannot be opened read-write is a failure.

use std::io::{self, Write};
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vm_memory::{Bytes, GuestAddress};
use vmm::arch::{BootEntry, BootProtocol};
use vmm::bus::{Bus, BusDevice};
use vmm::devices::legacy::{self, BootMark, BoundedLog, Serial, I8042};
use vmm::devices::IrqLine;
use vmm::memory::{create_guest_memory, Backing, GuestMemory};
use vmm::timings::Timings;
use vmm::vstate::vcpu::{ExitSignal, Vcpu, VcpuConfig};
use vmm::vstate::vm::Vm;
use vmm::vstate::VmExit;

const LOAD: u64 = 0x1000;
const MMIO_DEV: u64 = 0x6000;

fn kvm_available(test: &str) -> bool {
    if std::path::Path::new("/dev/kvm").exists() {
        if let Err(e) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm") {
            panic!("/dev/kvm exists but cannot be opened read-write: {e}");
        }
        return true;
    }
    let line = format!("{test}: /dev/kvm does not exist");
    println!("SKIPPED {line}");
    if let Ok(log) = std::env::var("HULL_SKIP_LOG") {
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
        writeln!(f, "{line}").unwrap();
    }
    assert_ne!(
        std::env::var("CI").as_deref(),
        Ok("true"),
        "skipped in CI (CI=true): {line}"
    );
    false
}

#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[derive(Default)]
struct Mmio {
    writes: Vec<(u64, u8)>,
}

impl BusDevice for Mmio {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(b'a' + offset as u8);
    }
    fn write(&mut self, offset: u64, data: &[u8]) {
        self.writes.push((offset, data[0]));
    }
}

struct Harness {
    vm: Vm,
    mem: GuestMemory,
    console: Shared,
    mmio_dev: Arc<Mutex<Mmio>>,
    timings: Arc<Timings>,
    exit: Arc<ExitSignal>,
    exit_rx: Receiver<VmExit>,
    io: Arc<Bus>,
    mmio: Arc<Bus>,
}

fn harness(mem: GuestMemory) -> Harness {
    let kvm = Vm::open_kvm().unwrap();
    let vm = Vm::new(&kvm).unwrap();
    vm.register_memory(&mem).unwrap();
    let (tx, exit_rx) = channel();
    let exit = ExitSignal::new(tx);
    let console = Shared::default();
    let timings = Timings::new(Instant::now(), false);
    let mut io = Bus::new();
    let serial = Serial::new(
        IrqLine::new(4).unwrap(),
        BoundedLog::new(Box::new(console.clone()), 1024),
    );
    io.insert(Arc::new(Mutex::new(serial)), legacy::COM1_PORT, legacy::COM1_PORT_LEN)
        .unwrap();
    io.insert(
        Arc::new(Mutex::new(I8042::new(exit.clone()))),
        legacy::I8042_PORT,
        legacy::I8042_PORT_LEN,
    )
    .unwrap();
    io.insert(
        Arc::new(Mutex::new(BootMark::new(timings.clone()))),
        legacy::BOOT_MARK_PORT,
        1,
    )
    .unwrap();
    let mmio_dev = Arc::new(Mutex::new(Mmio::default()));
    let mut mmio = Bus::new();
    mmio.insert(mmio_dev.clone(), MMIO_DEV, 0x100).unwrap();
    Harness {
        vm,
        mem,
        console,
        mmio_dev,
        timings,
        exit,
        exit_rx,
        io: Arc::new(io),
        mmio: Arc::new(mmio),
    }
}

fn run(h: &Harness, vcpu: Vcpu) -> VmExit {
    vcpu.start(|| Ok(())).unwrap();
    let exit = h
        .exit_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("guest did not stop within 60 s");
    assert!(h.exit.is_stopped());
    exit
}

/// Real mode: console "OK", boot mark, MMIO write and read echoed to the console,
/// then i8042 reset.
#[rustfmt::skip]
const REAL_MODE: &[u8] = &[
    0xba, 0xf8, 0x03,             // mov dx, 0x3f8
    0xb0, b'O', 0xee,             // mov al, 'O'; out dx, al
    0xb0, b'K', 0xee,             // mov al, 'K'; out dx, al
    0xc6, 0x06, 0x02, 0x60, 0x5a, // mov byte [0x6002], 0x5a
    0xa0, 0x04, 0x60,             // mov al, [0x6004]
    0xee,                         // out dx, al
    0xba, 0xf0, 0x03,             // mov dx, 0x3f0
    0xb0, 0x68, 0xee,             // mov al, 0x68; out dx, al
    0xb0, 0xfe, 0xe6, 0x64,       // mov al, 0xfe; out 0x64, al
    0xf4,                         // hlt
];

#[test]
fn real_mode_payload_drives_serial_mmio_boot_mark_and_reset() {
    if !kvm_available("real_mode_payload_drives_serial_mmio_boot_mark_and_reset") {
        return;
    }
    let mem = GuestMemory::from_ranges(&[(GuestAddress(0), 0x4000)]).unwrap();
    mem.write_slice(REAL_MODE, GuestAddress(LOAD)).unwrap();
    let h = harness(mem);
    let vcpu = Vcpu::new(&h.vm, 0, h.io.clone(), h.mmio.clone(), h.exit.clone()).unwrap();
    let mut sregs = vcpu.fd().get_sregs().unwrap();
    (sregs.cs.base, sregs.cs.selector) = (0, 0);
    vcpu.fd().set_sregs(&sregs).unwrap();
    let regs = kvm_bindings::kvm_regs {
        rip: LOAD,
        rflags: 2,
        ..Default::default()
    };
    vcpu.fd().set_regs(&regs).unwrap();
    assert_eq!(run(&h, vcpu), VmExit::Reset);
    assert_eq!(&*h.console.0.lock().unwrap(), b"OKe");
    assert_eq!(h.mmio_dev.lock().unwrap().writes, vec![(2, 0x5a)]);
    assert!(h.timings.init_seen());
}

/// Valid in both 32-bit protected mode and 64-bit mode: "PL" on the console, reset.
#[rustfmt::skip]
const PROTECTED: &[u8] = &[
    0x66, 0xba, 0xf8, 0x03,       // mov dx, 0x3f8
    0xb0, b'P', 0xee,             // mov al, 'P'; out dx, al
    0xb0, b'L', 0xee,             // mov al, 'L'; out dx, al
    0xb0, 0xfe, 0xe6, 0x64,       // mov al, 0xfe; out 0x64, al
    0xf4,                         // hlt
];

fn boot_entry_runs(protocol: BootProtocol) {
    let mem = create_guest_memory(32 << 20, Backing::Private).unwrap();
    mem.write_slice(PROTECTED, GuestAddress(LOAD)).unwrap();
    let h = harness(mem);
    let kvm = Vm::open_kvm().unwrap();
    let cpuid = kvm.get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES).unwrap();
    let vcpu = Vcpu::new(&h.vm, 0, h.io.clone(), h.mmio.clone(), h.exit.clone()).unwrap();
    let boot = BootEntry {
        protocol,
        entry: GuestAddress(LOAD),
    };
    vcpu.configure(&VcpuConfig {
        cpuid: &cpuid,
        mem: &h.mem,
        count: 1,
        boot,
        tsc_deadline: true,
    })
    .unwrap();
    assert_eq!(run(&h, vcpu), VmExit::Reset, "{protocol:?}");
    assert_eq!(&*h.console.0.lock().unwrap(), b"PL", "{protocol:?}");
}

#[test]
fn pvh_entry_state_runs_32bit_code() {
    if kvm_available("pvh_entry_state_runs_32bit_code") {
        boot_entry_runs(BootProtocol::Pvh);
    }
}

#[test]
fn linux64_entry_state_runs_long_mode_code() {
    if kvm_available("linux64_entry_state_runs_long_mode_code") {
        boot_entry_runs(BootProtocol::Linux64);
    }
}
