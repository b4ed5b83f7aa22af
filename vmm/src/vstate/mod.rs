//! KVM state: the VM (memory slots, irqchip, PIT) and its vCPUs.

pub mod exit_stats;
pub mod vcpu;
pub mod vm;

use std::fmt;

/// Why the VM stopped. Every stop is reported with one of these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmExit {
    /// The guest asked for a reset (i8042 or KVM system event); hull treats it as exit.
    Reset,
    /// The guest shut down (KVM system event) or triple-faulted.
    Shutdown,
    /// A vCPU executed HLT with interrupts off and nothing can wake it.
    Halted {
        /// Which vCPU.
        vcpu: u8,
    },
    /// The VMM received a terminating signal (the host's stop request).
    Signal(i32),
    /// A vCPU hit an error the VMM cannot recover from.
    VcpuError {
        /// Which vCPU.
        vcpu: u8,
        /// What happened.
        message: String,
    },
}

impl VmExit {
    /// Process exit status the VMM uses for this stop.
    pub fn exit_code(&self) -> i32 {
        match self {
            VmExit::Reset | VmExit::Shutdown | VmExit::Halted { .. } => 0,
            VmExit::Signal(n) => 128 + n,
            VmExit::VcpuError { .. } => 1,
        }
    }

    /// One-word machine-readable reason.
    pub fn reason(&self) -> &'static str {
        match self {
            VmExit::Reset => "reset",
            VmExit::Shutdown => "shutdown",
            VmExit::Halted { .. } => "halt",
            VmExit::Signal(_) => "signal",
            VmExit::VcpuError { .. } => "vcpu-error",
        }
    }
}

impl fmt::Display for VmExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VmExit::Reset => write!(f, "guest requested reset"),
            VmExit::Shutdown => write!(f, "guest shut down or triple-faulted"),
            VmExit::Halted { vcpu } => write!(f, "vcpu {vcpu} halted"),
            VmExit::Signal(n) => write!(f, "stopped by signal {n}"),
            VmExit::VcpuError { vcpu, message } => write!(f, "vcpu {vcpu} failed: {message}"),
        }
    }
}
