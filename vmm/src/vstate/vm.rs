//! The KVM VM: memory slots, in-kernel irqchip (PIC, IO-APIC, LAPICs) and PIT.

use kvm_bindings::{kvm_pit_config, kvm_userspace_memory_region, KVM_PIT_SPEAKER_DUMMY};
use kvm_ioctls::{Kvm, VmFd};
use thiserror::Error;
use vm_memory::{Address, GuestMemoryBackend, GuestMemoryRegion};
use vmm_sys_util::eventfd::EventFd;

use crate::memory::GuestMemory;

/// Address of the 3-page TSS region KVM needs on Intel hosts (inside the MMIO hole).
const KVM_TSS_ADDRESS: usize = 0xfffb_d000;

/// Errors creating or configuring the VM.
#[derive(Debug, Error)]
pub enum VmError {
    /// opening /dev/kvm failed
    #[error("cannot open /dev/kvm (read/write access is required)")]
    OpenKvm(#[source] kvm_ioctls::Error),
    /// a VM ioctl failed
    #[error("kvm {what} failed")]
    Kvm {
        /// Which operation.
        what: &'static str,
        /// Why.
        #[source]
        source: kvm_ioctls::Error,
    },
}

fn kvm_err(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> VmError {
    move |source| VmError::Kvm { what, source }
}

/// A KVM VM with its irqchip and PIT.
pub struct Vm {
    fd: VmFd,
}

impl Vm {
    /// Creates the VM, its in-kernel irqchip and PIT.
    pub fn new(kvm: &Kvm) -> Result<Vm, VmError> {
        let fd = kvm.create_vm().map_err(kvm_err("create vm"))?;
        fd.set_tss_address(KVM_TSS_ADDRESS)
            .map_err(kvm_err("set tss address"))?;
        fd.create_irq_chip().map_err(kvm_err("create irqchip"))?;
        let pit = kvm_pit_config {
            flags: KVM_PIT_SPEAKER_DUMMY,
            ..Default::default()
        };
        fd.create_pit2(pit).map_err(kvm_err("create pit"))?;
        Ok(Vm { fd })
    }

    /// Opens /dev/kvm.
    pub fn open_kvm() -> Result<Kvm, VmError> {
        Kvm::new().map_err(VmError::OpenKvm)
    }

    /// Registers every region of `mem` as a memory slot.
    pub fn register_memory(&self, mem: &GuestMemory) -> Result<(), VmError> {
        for (slot, region) in mem.iter().enumerate() {
            let host = mem.get_host_address(region.start_addr()).map_err(|_| VmError::Kvm {
                what: "find memory region",
                source: kvm_ioctls::Error::new(libc::EFAULT),
            })?;
            let slot = kvm_userspace_memory_region {
                slot: slot as u32,
                flags: 0,
                guest_phys_addr: region.start_addr().raw_value(),
                memory_size: region.len(),
                userspace_addr: host as u64,
            };
            // SAFETY: the region is a live mapping owned by `mem`, which outlives the VM
            // (the builder keeps both until the process exits), and slots never overlap
            // because the regions of a GuestMemoryMmap do not.
            unsafe { self.fd.set_user_memory_region(slot) }.map_err(kvm_err("set memory region"))?;
        }
        Ok(())
    }

    /// Makes every write to `evt` raise interrupt line `gsi`.
    pub fn register_irqfd(&self, evt: &EventFd, gsi: u32) -> Result<(), VmError> {
        self.fd.register_irqfd(evt, gsi).map_err(kvm_err("register irqfd"))
    }

    /// The raw VM fd, for creating vCPUs.
    pub fn fd(&self) -> &VmFd {
        &self.fd
    }
}
