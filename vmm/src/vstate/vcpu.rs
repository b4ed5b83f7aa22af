//! A vCPU: its initial state and the `KVM_RUN` loop that routes exits to the buses.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use kvm_bindings::{CpuId, KVM_SYSTEM_EVENT_CRASH, KVM_SYSTEM_EVENT_RESET, KVM_SYSTEM_EVENT_SHUTDOWN};
use kvm_ioctls::{VcpuExit, VcpuFd};
use thiserror::Error;

use super::exit_stats::{ExitKind, ExitStats};
use super::vm::Vm;
use super::VmExit;
use crate::arch::cpuid::filter_cpuid;
use crate::arch::msr::{setup_msrs, MsrError};
use crate::arch::regs::{setup_boot_vcpu, setup_fpu, setup_lapic, RegsError};
use crate::arch::BootEntry;
use crate::bus::Bus;
use crate::memory::GuestMemory;

/// Errors creating, configuring or starting a vCPU.
#[derive(Debug, Error)]
pub enum VcpuError {
    /// creating the vCPU failed
    #[error("cannot create vcpu {index}")]
    Create {
        /// vCPU index.
        index: u8,
        /// Why.
        #[source]
        source: kvm_ioctls::Error,
    },
    /// setting CPUID failed
    #[error("cannot set cpuid on vcpu {index}")]
    Cpuid {
        /// vCPU index.
        index: u8,
        /// Why.
        #[source]
        source: kvm_ioctls::Error,
    },
    /// setting MSRs failed
    #[error("cannot set msrs on vcpu {index}")]
    Msrs {
        /// vCPU index.
        index: u8,
        /// Why.
        #[source]
        source: MsrError,
    },
    /// setting registers failed
    #[error("cannot set registers on vcpu {index}")]
    Regs {
        /// vCPU index.
        index: u8,
        /// Why.
        #[source]
        source: RegsError,
    },
    /// spawning the thread failed
    #[error("cannot spawn the thread of vcpu {index}")]
    Spawn {
        /// vCPU index.
        index: u8,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The one place a VM stop is decided: the first reason wins and is reported once.
pub struct ExitSignal {
    stopped: AtomicBool,
    tx: Mutex<Sender<VmExit>>,
}

impl ExitSignal {
    /// A signal reporting to `tx`.
    pub fn new(tx: Sender<VmExit>) -> Arc<Self> {
        Arc::new(ExitSignal {
            stopped: AtomicBool::new(false),
            tx: Mutex::new(tx),
        })
    }

    /// Requests a stop; only the first request is reported.
    pub fn stop(&self, exit: VmExit) {
        if !self.stopped.swap(true, Ordering::SeqCst) {
            let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
            // The receiver only goes away when the process is exiting already.
            let _ = tx.send(exit);
        }
    }

    /// Whether a stop was requested.
    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }
}

/// How a vCPU is configured before it runs.
pub struct VcpuConfig<'a> {
    /// KVM's supported CPUID, filtered per vCPU.
    pub cpuid: &'a CpuId,
    /// Guest memory (for GDT and page tables).
    pub mem: &'a GuestMemory,
    /// Number of vCPUs in the VM.
    pub count: u8,
    /// Entry point; used by the boot vCPU (index 0) only.
    pub boot: BootEntry,
    /// KVM emulates the TSC-deadline timer (`KVM_CAP_TSC_DEADLINE_TIMER`).
    pub tsc_deadline: bool,
}

/// One virtual CPU and the buses its exits are routed to.
pub struct Vcpu {
    index: u8,
    fd: VcpuFd,
    io: Arc<Bus>,
    mmio: Arc<Bus>,
    exit: Arc<ExitSignal>,
    stats: Option<Arc<ExitStats>>,
}

impl Vcpu {
    /// Creates vCPU `index` of `vm`.
    pub fn new(vm: &Vm, index: u8, io: Arc<Bus>, mmio: Arc<Bus>, exit: Arc<ExitSignal>) -> Result<Vcpu, VcpuError> {
        let fd = vm
            .fd()
            .create_vcpu(u64::from(index))
            .map_err(|source| VcpuError::Create { index, source })?;
        Ok(Vcpu {
            index,
            fd,
            io,
            mmio,
            exit,
            stats: None,
        })
    }

    /// Sets CPUID, MSRs, LAPIC and, on the boot vCPU, the entry registers.
    pub fn configure(&self, config: &VcpuConfig) -> Result<(), VcpuError> {
        let index = self.index;
        let mut cpuid = config.cpuid.clone();
        filter_cpuid(&mut cpuid, index, config.count, config.tsc_deadline);
        self.fd
            .set_cpuid2(&cpuid)
            .map_err(|source| VcpuError::Cpuid { index, source })?;
        setup_msrs(&self.fd).map_err(|source| VcpuError::Msrs { index, source })?;
        let regs = if index == 0 {
            setup_boot_vcpu(&self.fd, config.mem, config.boot)
        } else {
            setup_fpu(&self.fd)
        };
        regs.and_then(|()| setup_lapic(&self.fd))
            .map_err(|source| VcpuError::Regs { index, source })
    }

    /// Counts this vCPU's exits into `stats`.
    pub fn count_exits(&mut self, stats: Arc<ExitStats>) {
        self.stats = Some(stats);
    }

    /// The KVM vCPU fd, for callers that set registers themselves.
    pub fn fd(&self) -> &VcpuFd {
        &self.fd
    }

    /// Runs the vCPU on its own thread; `on_start` runs first on that thread (the
    /// seccomp filter goes there). The vCPU is consumed: it cannot be started twice.
    pub fn start<F>(mut self, on_start: F) -> Result<JoinHandle<()>, VcpuError>
    where
        F: FnOnce() -> Result<(), String> + Send + 'static,
    {
        let index = self.index;
        std::thread::Builder::new()
            .name(format!("vcpu{index}"))
            .spawn(move || match on_start() {
                Ok(()) => self.run(),
                Err(message) => self.exit.stop(VmExit::VcpuError { vcpu: index, message }),
            })
            .map_err(|source| VcpuError::Spawn { index, source })
    }

    /// Runs `KVM_RUN` until this VM is stopped.
    pub fn run(&mut self) {
        while !self.exit.is_stopped() {
            if let Some(exit) = self.run_once() {
                self.exit.stop(exit);
            }
        }
    }

    /// One `KVM_RUN` and the handling of its exit. `Some` means the VM must stop.
    pub fn run_once(&mut self) -> Option<VmExit> {
        let index = self.index;
        match self.fd.run() {
            Ok(exit) => {
                if let Some(stats) = &self.stats {
                    count(stats, &exit);
                }
                handle_exit(index, exit, &self.io, &self.mmio)
            }
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => None,
            Err(e) => Some(VmExit::VcpuError {
                vcpu: index,
                message: format!("KVM_RUN failed: {e}"),
            }),
        }
    }
}

fn count(stats: &ExitStats, exit: &VcpuExit) {
    match exit {
        VcpuExit::IoIn(port, _) => stats.record(ExitKind::IoIn, u64::from(*port)),
        VcpuExit::IoOut(port, _) => stats.record(ExitKind::IoOut, u64::from(*port)),
        VcpuExit::MmioRead(addr, _) => stats.record(ExitKind::MmioRead, *addr),
        VcpuExit::MmioWrite(addr, _) => stats.record(ExitKind::MmioWrite, *addr),
        _ => {}
    }
}

fn handle_exit(index: u8, exit: VcpuExit, io: &Bus, mmio: &Bus) -> Option<VmExit> {
    match exit {
        VcpuExit::IoIn(port, data) => {
            // Unclaimed ports read as zero (the bus clears `data`): in particular the
            // CMOS "update in progress" bit reads clear, so no guest loop waits on it.
            io.read(u64::from(port), data);
            None
        }
        VcpuExit::IoOut(port, data) => {
            io.write(u64::from(port), data);
            None
        }
        VcpuExit::MmioRead(addr, data) => {
            if !mmio.read(addr, data) {
                crate::warn_limited!("vcpu {index}: read of unmapped mmio address {addr:#x}");
            }
            None
        }
        VcpuExit::MmioWrite(addr, data) => {
            if !mmio.write(addr, data) {
                crate::warn_limited!("vcpu {index}: write to unmapped mmio address {addr:#x}");
            }
            None
        }
        VcpuExit::Hlt => Some(VmExit::Halted { vcpu: index }),
        VcpuExit::Shutdown => Some(VmExit::Shutdown),
        VcpuExit::SystemEvent(kind, _) => Some(system_event(index, kind)),
        VcpuExit::Intr => None,
        VcpuExit::FailEntry(reason, cpu) => Some(VmExit::VcpuError {
            vcpu: index,
            message: format!("vm entry failed: hardware reason {reason:#x} on cpu {cpu}"),
        }),
        VcpuExit::InternalError => Some(VmExit::VcpuError {
            vcpu: index,
            message: "kvm internal error".into(),
        }),
        other => Some(VmExit::VcpuError {
            vcpu: index,
            message: format!("unexpected exit {other:?}"),
        }),
    }
}

fn system_event(index: u8, kind: u32) -> VmExit {
    match kind {
        KVM_SYSTEM_EVENT_RESET => VmExit::Reset,
        KVM_SYSTEM_EVENT_SHUTDOWN => VmExit::Shutdown,
        KVM_SYSTEM_EVENT_CRASH => VmExit::VcpuError {
            vcpu: index,
            message: "guest crashed".into(),
        },
        other => VmExit::VcpuError {
            vcpu: index,
            message: format!("unknown system event {other}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::channel;

    #[test]
    fn exit_signal_reports_only_the_first_stop() {
        let (tx, rx) = channel();
        let signal = ExitSignal::new(tx);
        assert!(!signal.is_stopped());
        signal.stop(VmExit::Reset);
        signal.stop(VmExit::Shutdown);
        assert!(signal.is_stopped());
        assert_eq!(rx.try_iter().collect::<Vec<_>>(), vec![VmExit::Reset]);
    }

    #[test]
    fn system_event_maps_reset_and_shutdown() {
        assert_eq!(system_event(0, KVM_SYSTEM_EVENT_RESET), VmExit::Reset);
        assert_eq!(system_event(0, KVM_SYSTEM_EVENT_SHUTDOWN), VmExit::Shutdown);
        assert!(matches!(system_event(1, 99), VmExit::VcpuError { vcpu: 1, .. }));
    }
}
