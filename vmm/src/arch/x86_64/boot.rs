//! Loading the kernel, initramfs and command line, and describing memory to the guest
//! with the PVH start info or the Linux boot protocol's zero page.

use std::fs::File;

use linux_loader::cmdline::Cmdline;
use linux_loader::loader::bootparam::{boot_e820_entry, boot_params};
use linux_loader::loader::elf::{Elf, PvhBootCapability};
use linux_loader::loader::{load_cmdline, KernelLoader};
use thiserror::Error;
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryRegion};

use super::layout::*;
use crate::memory::{low_ram_end, GuestMemory, MMIO_HOLE_END};

const E820_RAM: u32 = 1;
const PVH_MAGIC: u32 = 0x336e_c578;
const KERNEL_BOOT_FLAG_MAGIC: u16 = 0xaa55;
const KERNEL_HDR_MAGIC: u32 = 0x5372_6448;
const KERNEL_LOADER_OTHER: u8 = 0xff;
const KERNEL_MIN_ALIGNMENT: u32 = 0x0100_0000;
const PAGE_SIZE: u64 = 4096;

/// Errors loading the guest's boot images.
#[derive(Debug, Error)]
pub enum BootError {
    /// the kernel image could not be loaded
    #[error("cannot load the kernel image (an uncompressed ELF vmlinux is required)")]
    Kernel(#[source] linux_loader::loader::Error),
    /// the command line could not be placed in guest memory
    #[error("cannot write the kernel command line")]
    Cmdline(#[source] linux_loader::loader::Error),
    /// reading the initramfs failed
    #[error("cannot read the initramfs")]
    InitramfsRead(#[source] std::io::Error),
    /// the initramfs does not fit in guest memory
    #[error("initramfs of {size} bytes does not fit in guest memory above the kernel (ends at {kernel_end:#x})")]
    InitramfsTooLarge {
        /// Initramfs size.
        size: u64,
        /// First free byte after the kernel.
        kernel_end: u64,
    },
    /// writing a boot structure to guest memory failed
    #[error("cannot write the {what} to guest memory")]
    Write {
        /// Which structure.
        what: &'static str,
        /// Why.
        #[source]
        source: vm_memory::GuestMemoryError,
    },
}

/// Which entry protocol the first vCPU uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootProtocol {
    /// 32-bit protected mode at the ELF note's PVH entry, `rbx` = start info.
    Pvh,
    /// 64-bit long mode at the ELF entry, `rsi` = zero page.
    Linux64,
}

/// Where and how the boot vCPU starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootEntry {
    /// Entry protocol.
    pub protocol: BootProtocol,
    /// Entry address.
    pub entry: GuestAddress,
}

/// Where the initramfs landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InitramfsPlacement {
    /// Guest address.
    pub addr: GuestAddress,
    /// Size in bytes.
    pub size: u64,
}

/// Loads `kernel`, `initramfs` and `cmdline` and writes the boot structures for the
/// protocol the kernel supports (PVH preferred).
pub fn load_kernel(
    mem: &GuestMemory,
    kernel: &mut File,
    initramfs: Option<&mut File>,
    cmdline: &Cmdline,
) -> Result<BootEntry, BootError> {
    let loaded = Elf::load(mem, None, kernel, Some(GuestAddress(HIMEM_START))).map_err(BootError::Kernel)?;
    let initrd = match initramfs {
        Some(file) => Some(load_initramfs(mem, file, loaded.kernel_end)?),
        None => None,
    };
    load_cmdline(mem, GuestAddress(CMDLINE_START), cmdline).map_err(BootError::Cmdline)?;
    let cmdline_len = cmdline_len(cmdline);
    match loaded.pvh_boot_cap {
        PvhBootCapability::PvhEntryPresent(entry) => {
            write_pvh_start_info(mem, initrd)?;
            Ok(BootEntry {
                protocol: BootProtocol::Pvh,
                entry,
            })
        }
        _ => {
            write_zero_page(mem, initrd, cmdline_len)?;
            Ok(BootEntry {
                protocol: BootProtocol::Linux64,
                entry: loaded.kernel_load,
            })
        }
    }
}

fn cmdline_len(cmdline: &Cmdline) -> usize {
    cmdline.as_cstring().map(|c| c.as_bytes().len()).unwrap_or(0)
}

/// Copies the initramfs to the top of low RAM, page aligned, above the kernel.
pub fn load_initramfs(mem: &GuestMemory, file: &mut File, kernel_end: u64) -> Result<InitramfsPlacement, BootError> {
    let size = file.metadata().map_err(BootError::InitramfsRead)?.len();
    let top = low_ram_end(mem.last_addr().raw_value() + 1).min(INITRD_ADDR_MAX);
    let addr = top.checked_sub(size).map(|a| a & !(PAGE_SIZE - 1));
    let addr = match addr {
        Some(a) if a >= kernel_end && size > 0 => a,
        _ => return Err(BootError::InitramfsTooLarge { size, kernel_end }),
    };
    mem.read_exact_volatile_from(GuestAddress(addr), file, size as usize)
        .map_err(|source| BootError::Write {
            what: "initramfs",
            source,
        })?;
    Ok(InitramfsPlacement {
        addr: GuestAddress(addr),
        size,
    })
}

/// The guest's RAM map: (start, size) pairs, as e820 / PVH memmap entries describe it.
pub fn ram_map(mem: &GuestMemory) -> Vec<(u64, u64)> {
    let mut map = vec![(0, EBDA_START)];
    for region in mem.iter() {
        let start = region.start_addr().raw_value().max(HIMEM_START);
        let end = region.start_addr().raw_value() + region.len();
        if end > start {
            map.push((start, end - start));
        }
    }
    debug_assert!(map
        .iter()
        .all(|&(s, l)| s + l <= crate::memory::MMIO_HOLE_START || s >= MMIO_HOLE_END));
    map
}

fn write_bytes(mem: &GuestMemory, bytes: &[u8], addr: u64, what: &'static str) -> Result<(), BootError> {
    mem.write_slice(bytes, GuestAddress(addr))
        .map_err(|source| BootError::Write { what, source })
}

/// Writes `hvm_start_info`, its module list (the initramfs) and memory map.
fn write_pvh_start_info(mem: &GuestMemory, initrd: Option<InitramfsPlacement>) -> Result<(), BootError> {
    let map = ram_map(mem);
    let mut memmap = Vec::with_capacity(map.len() * 24);
    for (addr, size) in &map {
        memmap.extend_from_slice(&addr.to_le_bytes());
        memmap.extend_from_slice(&size.to_le_bytes());
        memmap.extend_from_slice(&E820_RAM.to_le_bytes());
        memmap.extend_from_slice(&0u32.to_le_bytes());
    }
    write_bytes(mem, &memmap, PVH_MEMMAP_START, "PVH memory map")?;
    if let Some(rd) = initrd {
        let mut module = Vec::with_capacity(32);
        for v in [rd.addr.raw_value(), rd.size, 0, 0] {
            module.extend_from_slice(&v.to_le_bytes());
        }
        write_bytes(mem, &module, PVH_MODLIST_START, "PVH module list")?;
    }
    let mut info = Vec::with_capacity(56);
    info.extend_from_slice(&PVH_MAGIC.to_le_bytes());
    info.extend_from_slice(&1u32.to_le_bytes()); // version
    info.extend_from_slice(&0u32.to_le_bytes()); // flags
    info.extend_from_slice(&u32::from(initrd.is_some()).to_le_bytes());
    info.extend_from_slice(&PVH_MODLIST_START.to_le_bytes());
    info.extend_from_slice(&CMDLINE_START.to_le_bytes());
    info.extend_from_slice(&0u64.to_le_bytes()); // no ACPI RSDP
    info.extend_from_slice(&PVH_MEMMAP_START.to_le_bytes());
    info.extend_from_slice(&(map.len() as u32).to_le_bytes());
    info.extend_from_slice(&0u32.to_le_bytes());
    write_bytes(mem, &info, PVH_INFO_START, "PVH start info")
}

/// Writes the Linux boot protocol zero page.
fn write_zero_page(mem: &GuestMemory, initrd: Option<InitramfsPlacement>, cmdline_len: usize) -> Result<(), BootError> {
    let mut params = boot_params::default();
    params.hdr.type_of_loader = KERNEL_LOADER_OTHER;
    params.hdr.boot_flag = KERNEL_BOOT_FLAG_MAGIC;
    params.hdr.header = KERNEL_HDR_MAGIC;
    params.hdr.cmd_line_ptr = CMDLINE_START as u32;
    params.hdr.cmdline_size = cmdline_len as u32;
    params.hdr.kernel_alignment = KERNEL_MIN_ALIGNMENT;
    if let Some(rd) = initrd {
        params.hdr.ramdisk_image = rd.addr.raw_value() as u32;
        params.hdr.ramdisk_size = rd.size as u32;
    }
    let map = ram_map(mem);
    for (slot, (addr, size)) in params.e820_table.iter_mut().zip(&map) {
        *slot = boot_e820_entry {
            addr: *addr,
            size: *size,
            r#type: E820_RAM,
        };
    }
    params.e820_entries = map.len().min(params.e820_table.len()) as u8;
    mem.write_obj(params, GuestAddress(ZERO_PAGE_START))
        .map_err(|source| BootError::Write {
            what: "zero page",
            source,
        })
}

/// Builds the command line with the capacity the boot protocol allows.
pub fn new_cmdline(base: &str) -> Result<Cmdline, linux_loader::cmdline::Error> {
    let mut cmdline = Cmdline::new(CMDLINE_MAX_SIZE)?;
    if !base.is_empty() {
        cmdline.insert_str(base)?;
    }
    Ok(cmdline)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{create_guest_memory, Backing};
    use std::io::Write;

    #[test]
    fn ram_map_leaves_ebda_and_legacy_hole_out() {
        let mem = create_guest_memory(64 << 20, Backing::Private).unwrap();
        assert_eq!(
            ram_map(&mem),
            vec![(0, EBDA_START), (HIMEM_START, (64 << 20) - HIMEM_START)]
        );
    }

    #[test]
    fn load_initramfs_puts_it_page_aligned_at_top_of_ram() {
        let mem = create_guest_memory(64 << 20, Backing::Private).unwrap();
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&[0xab; 5000]).unwrap();
        let rd = load_initramfs(&mem, &mut f_rewound(f), 0x200_0000).unwrap();
        assert_eq!(rd.addr.raw_value() % PAGE_SIZE, 0);
        assert!(rd.addr.raw_value() + 5000 <= 64 << 20);
        assert_eq!(mem.read_obj::<u8>(rd.addr.unchecked_add(4999)).unwrap(), 0xab);
    }

    #[test]
    fn load_initramfs_rejects_one_that_would_overlap_the_kernel() {
        let mem = create_guest_memory(32 << 20, Backing::Private).unwrap();
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&vec![0; 20 << 20]).unwrap();
        let err = load_initramfs(&mem, &mut f_rewound(f), 0x100_0000).unwrap_err();
        assert!(matches!(err, BootError::InitramfsTooLarge { .. }));
    }

    #[test]
    fn load_kernel_rejects_a_file_that_is_not_elf() {
        let mem = create_guest_memory(32 << 20, Backing::Private).unwrap();
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&[0u8; 4096]).unwrap();
        let cmdline = new_cmdline("console=ttyS0").unwrap();
        let err = load_kernel(&mem, &mut f_rewound(f), None, &cmdline).unwrap_err();
        assert!(matches!(err, BootError::Kernel(_)));
    }

    #[test]
    fn zero_page_carries_cmdline_initrd_and_e820() {
        let mem = create_guest_memory(64 << 20, Backing::Private).unwrap();
        let rd = InitramfsPlacement {
            addr: GuestAddress(0x300_0000),
            size: 1234,
        };
        write_zero_page(&mem, Some(rd), 17).unwrap();
        let p: boot_params = mem.read_obj(GuestAddress(ZERO_PAGE_START)).unwrap();
        let (image, size, cmd, n) = (
            p.hdr.ramdisk_image,
            p.hdr.ramdisk_size,
            p.hdr.cmd_line_ptr,
            p.e820_entries,
        );
        assert_eq!((image, size, cmd, n), (0x300_0000, 1234, CMDLINE_START as u32, 2));
    }

    #[test]
    fn pvh_start_info_has_magic_module_and_memmap() {
        let mem = create_guest_memory(64 << 20, Backing::Private).unwrap();
        let rd = InitramfsPlacement {
            addr: GuestAddress(0x300_0000),
            size: 99,
        };
        write_pvh_start_info(&mem, Some(rd)).unwrap();
        assert_eq!(mem.read_obj::<u32>(GuestAddress(PVH_INFO_START)).unwrap(), PVH_MAGIC);
        assert_eq!(mem.read_obj::<u32>(GuestAddress(PVH_INFO_START + 12)).unwrap(), 1);
        assert_eq!(mem.read_obj::<u32>(GuestAddress(PVH_INFO_START + 48)).unwrap(), 2);
        assert_eq!(mem.read_obj::<u64>(GuestAddress(PVH_MODLIST_START + 8)).unwrap(), 99);
    }

    fn f_rewound(mut f: File) -> File {
        use std::io::Seek;
        f.rewind().unwrap();
        f
    }
}
