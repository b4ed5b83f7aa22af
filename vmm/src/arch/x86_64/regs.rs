//! Initial vCPU state: segments, control registers, page tables, FPU and LAPIC.

use kvm_bindings::{kvm_fpu, kvm_regs, kvm_segment, kvm_sregs};
use kvm_ioctls::VcpuFd;
use thiserror::Error;
use vm_memory::{Bytes, GuestAddress};

use super::boot::{BootEntry, BootProtocol};
use super::layout::*;
use crate::memory::GuestMemory;

/// Errors setting up the initial vCPU state.
#[derive(Debug, Error)]
pub enum RegsError {
    /// a KVM register ioctl failed
    #[error("cannot set vcpu {what}")]
    Kvm {
        /// Which state.
        what: &'static str,
        /// Why.
        #[source]
        source: kvm_ioctls::Error,
    },
    /// writing GDT or page tables failed
    #[error("cannot write the {what} to guest memory")]
    Memory {
        /// Which structure.
        what: &'static str,
        /// Why.
        #[source]
        source: vm_memory::GuestMemoryError,
    },
}

const X86_CR0_PE: u64 = 0x1;
const X86_CR0_ET: u64 = 0x10;
const X86_CR0_PG: u64 = 0x8000_0000;
const X86_CR4_PAE: u64 = 0x20;
const EFER_LME: u64 = 0x100;
const EFER_LMA: u64 = 0x400;

/// GDT: null, 64-bit code, 32-bit code, data, TSS.
const GDT: [u64; 5] = [
    0,
    0x00af_9b00_0000_ffff,
    0x00cf_9b00_0000_ffff,
    0x00cf_9300_0000_ffff,
    0x0080_8b00_0000_0067,
];
const CODE64_SELECTOR: u16 = 0x08;
const CODE32_SELECTOR: u16 = 0x10;
const DATA_SELECTOR: u16 = 0x18;
const TSS_SELECTOR: u16 = 0x20;

/// Decodes a GDT entry into the segment KVM wants.
pub fn segment_from_gdt(entry: u64, selector: u16) -> kvm_segment {
    let base = ((entry >> 16) & 0xff_ffff) | (((entry >> 56) & 0xff) << 24);
    let limit_raw = (entry & 0xffff) | (((entry >> 48) & 0xf) << 16);
    let g = ((entry >> 55) & 1) as u8;
    let limit = if g == 1 { (limit_raw << 12) | 0xfff } else { limit_raw };
    kvm_segment {
        base,
        limit: limit as u32,
        selector,
        type_: ((entry >> 40) & 0xf) as u8,
        present: ((entry >> 47) & 1) as u8,
        dpl: ((entry >> 45) & 3) as u8,
        db: ((entry >> 54) & 1) as u8,
        s: ((entry >> 44) & 1) as u8,
        l: ((entry >> 53) & 1) as u8,
        g,
        avl: ((entry >> 52) & 1) as u8,
        unusable: 0,
        padding: 0,
    }
}

fn write_gdt(mem: &GuestMemory) -> Result<(), RegsError> {
    for (i, entry) in GDT.iter().enumerate() {
        mem.write_obj(*entry, GuestAddress(GDT_START + 8 * i as u64))
            .map_err(|source| RegsError::Memory { what: "GDT", source })?;
    }
    mem.write_obj(0u64, GuestAddress(IDT_START))
        .map_err(|source| RegsError::Memory { what: "IDT", source })
}

/// Identity-maps the first GiB with 2 MiB pages (for a 64-bit entry).
fn write_page_tables(mem: &GuestMemory) -> Result<(), RegsError> {
    let err = |source| RegsError::Memory {
        what: "page tables",
        source,
    };
    mem.write_obj(PDPTE_START | 0x03, GuestAddress(PML4_START))
        .map_err(err)?;
    mem.write_obj(PDE_START | 0x03, GuestAddress(PDPTE_START))
        .map_err(err)?;
    for i in 0..512u64 {
        mem.write_obj((i << 21) | 0x83, GuestAddress(PDE_START + i * 8))
            .map_err(err)?;
    }
    Ok(())
}

/// Special registers for `entry`'s protocol (the boot vCPU only).
pub fn boot_sregs(mut sregs: kvm_sregs, protocol: BootProtocol) -> kvm_sregs {
    let (code, code_sel) = match protocol {
        BootProtocol::Pvh => (GDT[2], CODE32_SELECTOR),
        BootProtocol::Linux64 => (GDT[1], CODE64_SELECTOR),
    };
    let data = segment_from_gdt(GDT[3], DATA_SELECTOR);
    sregs.cs = segment_from_gdt(code, code_sel);
    (sregs.ds, sregs.es, sregs.fs, sregs.gs, sregs.ss) = (data, data, data, data, data);
    sregs.tr = segment_from_gdt(GDT[4], TSS_SELECTOR);
    sregs.gdt.base = GDT_START;
    sregs.gdt.limit = (GDT.len() * 8 - 1) as u16;
    sregs.idt.base = IDT_START;
    sregs.idt.limit = 7;
    match protocol {
        BootProtocol::Pvh => {
            sregs.cr0 = X86_CR0_PE | X86_CR0_ET;
            sregs.cr4 = 0;
            sregs.efer = 0;
        }
        BootProtocol::Linux64 => {
            sregs.cr0 = X86_CR0_PE | X86_CR0_ET | X86_CR0_PG;
            sregs.cr3 = PML4_START;
            sregs.cr4 = X86_CR4_PAE;
            sregs.efer = EFER_LME | EFER_LMA;
        }
    }
    sregs
}

/// General registers for the boot vCPU.
pub fn boot_regs(entry: BootEntry) -> kvm_regs {
    let mut regs = kvm_regs {
        rflags: 0x2,
        rip: entry.entry.0,
        ..Default::default()
    };
    match entry.protocol {
        BootProtocol::Pvh => regs.rbx = PVH_INFO_START,
        BootProtocol::Linux64 => {
            regs.rsp = BOOT_STACK_POINTER;
            regs.rbp = BOOT_STACK_POINTER;
            regs.rsi = ZERO_PAGE_START;
        }
    }
    regs
}

/// Puts the boot vCPU at the kernel entry.
pub fn setup_boot_vcpu(vcpu: &VcpuFd, mem: &GuestMemory, entry: BootEntry) -> Result<(), RegsError> {
    write_gdt(mem)?;
    if entry.protocol == BootProtocol::Linux64 {
        write_page_tables(mem)?;
    }
    let sregs = vcpu
        .get_sregs()
        .map_err(|source| RegsError::Kvm { what: "sregs", source })?;
    vcpu.set_sregs(&boot_sregs(sregs, entry.protocol))
        .map_err(|source| RegsError::Kvm { what: "sregs", source })?;
    vcpu.set_regs(&boot_regs(entry))
        .map_err(|source| RegsError::Kvm { what: "regs", source })?;
    setup_fpu(vcpu)
}

/// Default x87/SSE control words.
pub fn setup_fpu(vcpu: &VcpuFd) -> Result<(), RegsError> {
    let fpu = kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    };
    vcpu.set_fpu(&fpu)
        .map_err(|source| RegsError::Kvm { what: "fpu", source })
}

const APIC_LVT0: usize = 0x350;
const APIC_LVT1: usize = 0x360;
const APIC_MODE_NMI: u32 = 0x4;
const APIC_MODE_EXTINT: u32 = 0x7;

fn set_delivery_mode(regs: &mut [std::os::raw::c_char; 1024], offset: usize, mode: u32) {
    let mut bytes = [0u8; 4];
    for (b, r) in bytes.iter_mut().zip(&regs[offset..offset + 4]) {
        *b = *r as u8;
    }
    let value = (u32::from_le_bytes(bytes) & !0x700) | (mode << 8);
    for (r, b) in regs[offset..offset + 4].iter_mut().zip(value.to_le_bytes()) {
        *r = b as std::os::raw::c_char;
    }
}

/// Routes LINT0 as ExtINT and LINT1 as NMI, as the MP table announces.
pub fn setup_lapic(vcpu: &VcpuFd) -> Result<(), RegsError> {
    let mut lapic = vcpu
        .get_lapic()
        .map_err(|source| RegsError::Kvm { what: "lapic", source })?;
    set_delivery_mode(&mut lapic.regs, APIC_LVT0, APIC_MODE_EXTINT);
    set_delivery_mode(&mut lapic.regs, APIC_LVT1, APIC_MODE_NMI);
    vcpu.set_lapic(&lapic)
        .map_err(|source| RegsError::Kvm { what: "lapic", source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{create_guest_memory, Backing};

    #[test]
    fn segment_from_gdt_decodes_flat_64bit_code() {
        let s = segment_from_gdt(GDT[1], CODE64_SELECTOR);
        assert_eq!(
            (s.base, s.limit, s.l, s.db, s.type_, s.present, s.g),
            (0, 0xffff_ffff, 1, 0, 0xb, 1, 1)
        );
    }

    #[test]
    fn segment_from_gdt_decodes_flat_32bit_code_and_data() {
        let c = segment_from_gdt(GDT[2], CODE32_SELECTOR);
        assert_eq!((c.l, c.db, c.type_), (0, 1, 0xb));
        let d = segment_from_gdt(GDT[3], DATA_SELECTOR);
        assert_eq!((d.type_, d.s, d.limit), (0x3, 1, 0xffff_ffff));
    }

    #[test]
    fn boot_sregs_pvh_is_protected_mode_without_paging() {
        let s = boot_sregs(kvm_sregs::default(), BootProtocol::Pvh);
        assert_eq!(s.cr0 & X86_CR0_PG, 0);
        assert_eq!(s.cr0 & X86_CR0_PE, 1);
        assert_eq!(s.efer, 0);
    }

    #[test]
    fn boot_sregs_linux64_enables_long_mode_paging() {
        let s = boot_sregs(kvm_sregs::default(), BootProtocol::Linux64);
        assert_eq!((s.cr3, s.efer & EFER_LMA, s.cs.l), (PML4_START, EFER_LMA, 1));
    }

    #[test]
    fn page_tables_identity_map_first_gib() {
        let mem = create_guest_memory(32 << 20, Backing::Private).unwrap();
        write_page_tables(&mem).unwrap();
        let pde: u64 = mem.read_obj(GuestAddress(PDE_START + 511 * 8)).unwrap();
        assert_eq!(pde, (511 << 21) | 0x83);
    }

    #[test]
    fn set_delivery_mode_only_touches_mode_bits() {
        let mut regs = [0 as std::os::raw::c_char; 1024];
        regs[APIC_LVT0] = 0x11;
        regs[APIC_LVT0 + 2] = 0x01;
        set_delivery_mode(&mut regs, APIC_LVT0, APIC_MODE_EXTINT);
        assert_eq!(
            (regs[APIC_LVT0], regs[APIC_LVT0 + 1], regs[APIC_LVT0 + 2]),
            (0x11, 0x07, 0x01)
        );
    }
}
