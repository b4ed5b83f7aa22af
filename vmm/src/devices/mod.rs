//! Guest devices: legacy port-I/O devices and virtio-mmio devices.

pub mod legacy;
pub mod virtio;

use vm_superio::Trigger;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

/// An interrupt line: an eventfd registered with KVM as an irqfd for one GSI.
pub struct IrqLine {
    evt: EventFd,
    gsi: u32,
}

impl IrqLine {
    /// A new, not yet registered line for `gsi`.
    pub fn new(gsi: u32) -> std::io::Result<IrqLine> {
        Ok(IrqLine {
            evt: EventFd::new(EFD_NONBLOCK)?,
            gsi,
        })
    }

    /// The eventfd to register with KVM.
    pub fn evt(&self) -> &EventFd {
        &self.evt
    }

    /// The GSI this line raises.
    pub fn gsi(&self) -> u32 {
        self.gsi
    }

    /// Raises the interrupt.
    pub fn raise(&self) -> std::io::Result<()> {
        self.evt.write(1)
    }

    /// A second handle to the same line.
    pub fn try_clone(&self) -> std::io::Result<IrqLine> {
        Ok(IrqLine {
            evt: self.evt.try_clone()?,
            gsi: self.gsi,
        })
    }
}

impl Trigger for IrqLine {
    type E = std::io::Error;

    fn trigger(&self) -> std::io::Result<()> {
        self.raise()
    }
}
