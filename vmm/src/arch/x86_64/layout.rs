//! Fixed guest-physical addresses used while booting.

/// Global descriptor table.
pub const GDT_START: u64 = 0x500;
/// Interrupt descriptor table (empty; the kernel installs its own).
pub const IDT_START: u64 = 0x520;
/// PVH `hvm_start_info`.
pub const PVH_INFO_START: u64 = 0x6000;
/// PVH initramfs module list, right after the start info.
pub const PVH_MODLIST_START: u64 = 0x6040;
/// PVH memory map table.
pub const PVH_MEMMAP_START: u64 = 0x6100;
/// Linux boot protocol "zero page" (`boot_params`).
pub const ZERO_PAGE_START: u64 = 0x7000;
/// Stack pointer handed to a 64-bit boot.
pub const BOOT_STACK_POINTER: u64 = 0x8ff0;
/// Identity-mapping page tables: PML4, PDPT, PD.
pub const PML4_START: u64 = 0x9000;
/// Page directory pointer table.
pub const PDPTE_START: u64 = 0xa000;
/// Page directory (2 MiB pages, first GiB).
pub const PDE_START: u64 = 0xb000;
/// Kernel command line.
pub const CMDLINE_START: u64 = 0x20000;
/// Largest kernel command line accepted (bytes, without the NUL).
pub const CMDLINE_MAX_SIZE: usize = 4096;
/// Extended BIOS data area, where the MP table lives.
pub const EBDA_START: u64 = 0x9fc00;
/// Size of the EBDA window reserved for the MP table.
pub const EBDA_SIZE: u64 = 0x400;
/// Start of "high" memory: the kernel may not be loaded below this.
pub const HIMEM_START: u64 = 0x10_0000;
/// Local APIC address.
pub const APIC_START: u64 = 0xfee0_0000;
/// IO-APIC address.
pub const IOAPIC_START: u64 = 0xfec0_0000;
/// Number of IO-APIC pins (GSIs) KVM provides.
pub const IOAPIC_PINS: u32 = 24;
/// Largest initramfs load address (kept below 4 GiB for every boot protocol).
pub const INITRD_ADDR_MAX: u64 = 0xffff_ffff;
