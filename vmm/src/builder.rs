//! The boot recipe: config -> memory -> VM -> devices -> kernel -> vCPUs -> run.
//!
//! [`boot`] reads top to bottom as the boot order; each step is a small function
//! taking what the previous steps produced.

use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex};

use kvm_ioctls::Kvm;
use linux_loader::cmdline::Cmdline;
use thiserror::Error;
use vm_memory::GuestAddress;

use crate::arch::boot::new_cmdline;
use crate::arch::layout::IOAPIC_PINS;
use crate::arch::mptable::{setup_mptable, MpTableError};
use crate::arch::{load_kernel, BootEntry, BootError};
use crate::bus::{Bus, BusError};
use crate::config::{Console, VmConfig};
use crate::confine::{self, ThreadKind};
use crate::devices::legacy::{self, BootMark, BoundedLog, Serial, I8042};
use crate::devices::virtio::balloon::{Balloon, BalloonStats};
use crate::devices::virtio::block::{Block, Disk, DiskError};
use crate::devices::virtio::fs::{Fs, FsError};
use crate::devices::virtio::net::device::NetError;
use crate::devices::virtio::net::Net;
use crate::devices::virtio::rng::Rng;
use crate::devices::virtio::vsock::{Vsock, VsockError};
use crate::devices::virtio::{Interrupt, MmioTransport, VirtioDevice};
use crate::devices::IrqLine;
use crate::event_loop::{EventLoop, EventLoopHandle};
use crate::memory::{create_guest_memory, Backing, GuestMemory, MemoryError, VIRTIO_MMIO_BASE, VIRTIO_MMIO_SIZE};
use crate::timings::Timings;
use crate::vstate::exit_stats::ExitStats;
use crate::vstate::vcpu::{ExitSignal, Vcpu, VcpuConfig, VcpuError};
use crate::vstate::vm::{Vm, VmError};
use crate::vstate::VmExit;

/// First GSI handed to virtio devices (0-4 are legacy).
pub const VIRTIO_FIRST_IRQ: u32 = 5;

/// Errors while building the VM. Each names the step that failed.
#[derive(Debug, Error)]
pub enum BuildError {
    /// guest memory
    #[error("guest memory")]
    Memory(#[from] MemoryError),
    /// the KVM VM
    #[error("kvm vm")]
    Vm(#[from] VmError),
    /// a vCPU
    #[error("vcpu")]
    Vcpu(#[from] VcpuError),
    /// loading the kernel
    #[error("kernel load")]
    Boot(#[from] BootError),
    /// the MP table
    #[error("mp table")]
    MpTable(#[from] MpTableError),
    /// a disk
    #[error("disk")]
    Disk(#[from] DiskError),
    /// the vsock device
    #[error("vsock")]
    Vsock(#[from] VsockError),
    /// the network device
    #[error("network")]
    Net(#[from] NetError),
    /// a virtio-fs device
    #[error("virtio-fs")]
    Fs(#[from] FsError),
    /// placing a device on a bus
    #[error("device placement")]
    Bus(#[from] BusError),
    /// the kernel command line is invalid or too long
    #[error("kernel command line: {0}")]
    Cmdline(linux_loader::cmdline::Error),
    /// too many virtio devices for the interrupt lines
    #[error("{count} virtio devices requested; at most {max} fit")]
    TooManyDevices {
        /// Devices asked for.
        count: usize,
        /// Devices that fit.
        max: u32,
    },
    /// confining the process
    #[error("confinement")]
    Confine(#[from] crate::confine::ConfineError),
    /// opening a file failed
    #[error("cannot open {path}")]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// a host resource (eventfd, thread, epoll) failed
    #[error("{what}")]
    Host {
        /// What was being set up.
        what: &'static str,
        /// Why.
        #[source]
        source: io::Error,
    },
}

fn host(what: &'static str) -> impl FnOnce(io::Error) -> BuildError {
    move |source| BuildError::Host { what, source }
}

fn open(path: &PathBuf) -> Result<File, BuildError> {
    File::open(path).map_err(|source| BuildError::Open {
        path: path.clone(),
        source,
    })
}

/// The port-I/O and MMIO buses.
pub struct Buses {
    /// Port I/O.
    pub io: Arc<Bus>,
    /// MMIO.
    pub mmio: Arc<Bus>,
}

/// Boots the guest described by `config` and runs it until it stops.
pub fn boot(config: &VmConfig, timings: Arc<Timings>) -> Result<VmExit, BuildError> {
    let kvm = Vm::open_kvm()?;
    let mem = create_guest_memory(config.mem_bytes(), backing(config))?;
    timings.phase("memory");
    let vm = Vm::new(&kvm)?;
    vm.register_memory(&mem)?;
    timings.phase("vm");
    let (exit_tx, exit_rx) = channel();
    let exit = ExitSignal::new(exit_tx);
    block_stop_signals();
    let (event_loop, loop_handle) = EventLoop::new().map_err(host("event loop"))?;
    let mut cmdline = new_cmdline(&config.cmdline).map_err(BuildError::Cmdline)?;
    let buses = attach_devices(&vm, &mem, config, &loop_handle, &exit, &timings, &mut cmdline)?;
    timings.phase("devices");
    let entry = load_boot_images(&mem, config, &cmdline)?;
    setup_mptable(&mem, config.vcpus)?;
    timings.phase("kernel");
    let mut vcpus = create_vcpus(&kvm, &vm, &mem, config, entry, &buses, &exit)?;
    let stats = config.timings.then(|| Arc::new(ExitStats::default()));
    if let Some(stats) = &stats {
        vcpus.iter_mut().for_each(|v| v.count_exits(stats.clone()));
    }
    confine_process(config)?;
    start_threads(config, event_loop, vcpus, &exit)?;
    confine::enter_thread(ThreadKind::Main, config.seccomp)?;
    timings.phase("vcpus");
    let stop = wait_for_exit(&exit_rx);
    report_console_dropped(config.console_limit);
    report_balloon();
    if let Some(stats) = stats {
        eprintln!("{}", stats.line(8));
    }
    Ok(stop)
}

/// How guest memory is backed: a vhost-user backend maps guest memory itself, from a
/// memory file.
fn backing(config: &VmConfig) -> Backing {
    if config.filesystems.is_empty() {
        Backing::Private
    } else {
        Backing::Shared
    }
}

/// Descriptors the VMM may hold: fixed ones plus vsock connections.
const NOFILE_LIMIT: u64 = 512;

fn confine_process(config: &VmConfig) -> Result<(), BuildError> {
    let largest_disk = config
        .disks
        .iter()
        .filter(|d| !d.read_only)
        .filter_map(|d| std::fs::metadata(&d.path).ok().map(|m| m.len()))
        .max()
        .unwrap_or(0);
    let fsize = largest_disk.max(config.console_limit).saturating_add(1);
    confine::set_limits(confine::Limits {
        nofile: NOFILE_LIMIT,
        fsize,
    })?;
    if config.landlock {
        let outcome = confine::restrict_filesystem()?;
        match outcome {
            confine::LandlockOutcome::Enforced => {}
            confine::LandlockOutcome::Partial => eprintln!(
                "vmm: landlock: this kernel's landlock ABI denies only part of the rights \
                 (TCP bind/connect need ABI 4, Linux 6.7)"
            ),
            confine::LandlockOutcome::Unsupported => {
                eprintln!("vmm: landlock: not supported by this kernel; filesystem access not restricted")
            }
        }
    }
    Ok(())
}

/// Blocks the stop signals; threads created afterwards inherit the mask, so only the
/// signal thread ([`spawn_signal_thread`]) ever takes them.
pub fn block_stop_signals() {
    let set = stop_signal_set();
    // SAFETY: pthread_sigmask with a valid, initialised set and a null old-set.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
}

/// Waits for a stop signal on its own (confined) thread and reports it as the stop.
pub fn spawn_signal_thread(exit: Arc<ExitSignal>, seccomp: bool) -> Result<(), BuildError> {
    let set = stop_signal_set();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Err(e) = confine::enter_thread(ThreadKind::Main, seccomp) {
                let message = format!("signal thread: {e}");
                return exit.stop(VmExit::VcpuError { vcpu: 0, message });
            }
            let mut signal = 0;
            // SAFETY: sigwait with a valid set and output pointer.
            while unsafe { libc::sigwait(&set, &mut signal) } != 0 {}
            exit.stop(VmExit::Signal(signal));
        })
        .map_err(host("signal thread"))?;
    Ok(())
}

fn stop_signal_set() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise and fill a local sigset_t.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for signal in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::sigaddset(&mut set, signal);
        }
        set
    }
}

fn wait_for_exit(exit_rx: &Receiver<VmExit>) -> VmExit {
    exit_rx.recv().unwrap_or(VmExit::VcpuError {
        vcpu: 0,
        message: "all vcpu threads ended".into(),
    })
}

fn load_boot_images(mem: &GuestMemory, config: &VmConfig, cmdline: &Cmdline) -> Result<BootEntry, BuildError> {
    let mut kernel = open(&config.kernel)?;
    let mut initramfs = config.initramfs.as_ref().map(open).transpose()?;
    Ok(load_kernel(mem, &mut kernel, initramfs.as_mut(), cmdline)?)
}

fn console_log(config: &VmConfig) -> Result<BoundedLog, BuildError> {
    let out: Box<dyn io::Write + Send> = match &config.console {
        Console::Stdout => Box::new(io::stdout()),
        Console::Null => Box::new(io::sink()),
        Console::File(path) => Box::new(File::create(path).map_err(|source| BuildError::Open {
            path: path.clone(),
            source,
        })?),
    };
    let log = BoundedLog::new(out, config.console_limit);
    let _ = CONSOLE_DROPPED.set(log.dropped());
    Ok(log)
}

/// The console's count of bytes dropped past its limit, said when the VM stops.
static CONSOLE_DROPPED: std::sync::OnceLock<Arc<std::sync::atomic::AtomicU64>> = std::sync::OnceLock::new();

/// Says how many console bytes were dropped, if any (the monitor records it).
fn report_console_dropped(limit: u64) {
    let dropped = CONSOLE_DROPPED
        .get()
        .map_or(0, |d| d.load(std::sync::atomic::Ordering::Relaxed));
    if dropped > 0 {
        eprintln!("vmm: console: {dropped} bytes dropped past the {limit}-byte limit");
    }
}

/// The balloon's counters, summed up when the VM stops.
static BALLOON_STATS: std::sync::OnceLock<Arc<BalloonStats>> = std::sync::OnceLock::new();

/// Says how much memory the guest gave back, if it gave any.
fn report_balloon() {
    if let Some(line) = BALLOON_STATS.get().and_then(|s| s.summary()) {
        eprintln!("{line}");
    }
}

fn irq_line(vm: &Vm, gsi: u32) -> Result<IrqLine, BuildError> {
    let line = IrqLine::new(gsi).map_err(host("irq eventfd"))?;
    vm.register_irqfd(line.evt(), gsi)?;
    Ok(line)
}

fn legacy_bus(vm: &Vm, config: &VmConfig, exit: &Arc<ExitSignal>, timings: &Arc<Timings>) -> Result<Bus, BuildError> {
    let mut io = Bus::new();
    let serial = Serial::new(irq_line(vm, legacy::COM1_IRQ)?, console_log(config)?);
    io.insert(Arc::new(Mutex::new(serial)), legacy::COM1_PORT, legacy::COM1_PORT_LEN)?;
    io.insert(
        Arc::new(Mutex::new(I8042::new(exit.clone()))),
        legacy::I8042_PORT,
        legacy::I8042_PORT_LEN,
    )?;
    io.insert(
        Arc::new(Mutex::new(BootMark::new(timings.clone()))),
        legacy::BOOT_MARK_PORT,
        1,
    )?;
    Ok(io)
}

fn virtio_devices(config: &VmConfig) -> Result<Vec<Box<dyn VirtioDevice>>, BuildError> {
    let mut devices: Vec<Box<dyn VirtioDevice>> = Vec::new();
    for (i, disk) in config.disks.iter().enumerate() {
        let id = format!("hull-disk-{i}");
        devices.push(Box::new(Block::new(Disk::open(&disk.path, disk.read_only, &id)?)));
    }
    if let Some(vsock) = &config.vsock {
        devices.push(Box::new(Vsock::new(vsock.cid, &vsock.uds)?));
    }
    if let Some(net) = &config.net {
        devices.push(Box::new(Net::connect(&net.socket, net.mac, net.egress.clone())?));
    }
    for fs in &config.filesystems {
        devices.push(Box::new(Fs::connect(&fs.tag, &fs.socket)?));
    }
    devices.push(Box::new(Rng::new()));
    // Last, so every other device keeps its window and IRQ; a guest without a balloon
    // driver just leaves it alone.
    let balloon = Balloon::new(backing(config));
    let _ = BALLOON_STATS.set(balloon.stats());
    devices.push(Box::new(balloon));
    Ok(devices)
}

fn attach_devices(
    vm: &Vm,
    mem: &GuestMemory,
    config: &VmConfig,
    loop_handle: &EventLoopHandle,
    exit: &Arc<ExitSignal>,
    timings: &Arc<Timings>,
    cmdline: &mut Cmdline,
) -> Result<Buses, BuildError> {
    let io = legacy_bus(vm, config, exit, timings)?;
    let devices = virtio_devices(config)?;
    let max = IOAPIC_PINS - VIRTIO_FIRST_IRQ;
    if devices.len() > max as usize {
        return Err(BuildError::TooManyDevices {
            count: devices.len(),
            max,
        });
    }
    let mut mmio = Bus::new();
    for (i, device) in devices.into_iter().enumerate() {
        let (irq, base) = (
            VIRTIO_FIRST_IRQ + i as u32,
            VIRTIO_MMIO_BASE + i as u64 * VIRTIO_MMIO_SIZE,
        );
        let interrupt = Interrupt::new(irq_line(vm, irq)?);
        let spawner = Arc::new(loop_handle.clone());
        let transport = MmioTransport::new(device, mem.clone(), interrupt, spawner).map_err(host("virtio queues"))?;
        mmio.insert(Arc::new(Mutex::new(transport)), base, VIRTIO_MMIO_SIZE)?;
        cmdline
            .add_virtio_mmio_device(VIRTIO_MMIO_SIZE, GuestAddress(base), irq, None)
            .map_err(BuildError::Cmdline)?;
    }
    Ok(Buses {
        io: Arc::new(io),
        mmio: Arc::new(mmio),
    })
}

fn create_vcpus(
    kvm: &Kvm,
    vm: &Vm,
    mem: &GuestMemory,
    config: &VmConfig,
    entry: BootEntry,
    buses: &Buses,
    exit: &Arc<ExitSignal>,
) -> Result<Vec<Vcpu>, BuildError> {
    let cpuid = kvm
        .get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES)
        .map_err(|source| VmError::Kvm {
            what: "get supported cpuid",
            source,
        })?;
    let vcpu_config = VcpuConfig {
        cpuid: &cpuid,
        mem,
        count: config.vcpus,
        boot: entry,
        tsc_deadline: kvm.check_extension(kvm_ioctls::Cap::TscDeadlineTimer),
    };
    let mut vcpus = Vec::with_capacity(config.vcpus as usize);
    for index in 0..config.vcpus {
        let vcpu = Vcpu::new(vm, index, buses.io.clone(), buses.mmio.clone(), exit.clone())?;
        vcpu.configure(&vcpu_config)?;
        vcpus.push(vcpu);
    }
    Ok(vcpus)
}

fn start_threads(
    config: &VmConfig,
    event_loop: EventLoop,
    vcpus: Vec<Vcpu>,
    exit: &Arc<ExitSignal>,
) -> Result<(), BuildError> {
    let seccomp = config.seccomp;
    spawn_signal_thread(exit.clone(), seccomp)?;
    let loop_exit = exit.clone();
    std::thread::Builder::new()
        .name("devices".into())
        .spawn(move || match confine::enter_thread(ThreadKind::EventLoop, seccomp) {
            Ok(()) => event_loop.run(),
            Err(e) => loop_exit.stop(VmExit::VcpuError {
                vcpu: 0,
                message: format!("device thread: {e}"),
            }),
        })
        .map_err(host("device thread"))?;
    for vcpu in vcpus {
        vcpu.start(move || confine::enter_thread(ThreadKind::Vcpu, seccomp).map_err(|e| e.to_string()))?;
    }
    Ok(())
}
