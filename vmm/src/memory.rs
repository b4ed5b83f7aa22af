//! Guest physical memory: the layout and the mapping that backs it.
//!
//! RAM starts at 0. When it would reach into the 32-bit MMIO hole it is split in two
//! regions, the second starting at 4 GiB. Devices live in the hole.

use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};

use thiserror::Error;
use vm_memory::mmap::MmapRegionBuilder;
use vm_memory::{FileOffset, GuestAddress, GuestMemoryMmap, GuestRegionMmap, MmapRegion};

/// Guest memory as the VMM uses it everywhere.
pub type GuestMemory = GuestMemoryMmap<()>;

/// Start of the 32-bit MMIO hole; RAM never overlaps it.
pub const MMIO_HOLE_START: u64 = 0xc000_0000;
/// End (exclusive) of the 32-bit MMIO hole.
pub const MMIO_HOLE_END: u64 = 1 << 32;
/// Where the virtio-mmio device windows start.
pub const VIRTIO_MMIO_BASE: u64 = 0xd000_0000;
/// Size of one virtio-mmio device window.
pub const VIRTIO_MMIO_SIZE: u64 = 0x1000;
/// Smallest guest memory accepted.
pub const MIN_MEM_BYTES: u64 = 32 << 20;
/// Largest guest memory accepted.
pub const MAX_MEM_BYTES: u64 = 64 << 30;

/// Errors building guest memory.
#[derive(Debug, Error)]
pub enum MemoryError {
    /// guest memory size is out of range
    #[error("guest memory size {bytes} bytes is out of range ({MIN_MEM_BYTES}..={MAX_MEM_BYTES}, whole MiB)")]
    BadSize {
        /// The size asked for.
        bytes: u64,
    },
    /// the shared memory file could not be created
    #[error("cannot create a {bytes}-byte shared memory file for guest memory")]
    Memfd {
        /// The size asked for.
        bytes: u64,
        /// Why it failed.
        #[source]
        source: io::Error,
    },
    /// mapping guest memory failed
    #[error("cannot map {bytes} bytes of guest memory")]
    Map {
        /// The size asked for.
        bytes: u64,
        /// Why it failed.
        #[source]
        source: io::Error,
    },
    /// the mapped regions do not form a valid guest memory layout
    #[error("guest memory of {bytes} bytes has an invalid layout")]
    Layout {
        /// The size asked for.
        bytes: u64,
    },
}

/// The RAM regions (start, size) for a guest of `bytes` bytes.
pub fn ram_regions(bytes: u64) -> Result<Vec<(GuestAddress, usize)>, MemoryError> {
    if !(MIN_MEM_BYTES..=MAX_MEM_BYTES).contains(&bytes) || bytes % (1 << 20) != 0 {
        return Err(MemoryError::BadSize { bytes });
    }
    if bytes <= MMIO_HOLE_START {
        return Ok(vec![(GuestAddress(0), bytes as usize)]);
    }
    Ok(vec![
        (GuestAddress(0), MMIO_HOLE_START as usize),
        (GuestAddress(MMIO_HOLE_END), (bytes - MMIO_HOLE_START) as usize),
    ])
}

/// How guest memory is backed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backing {
    /// Anonymous private memory: only this process can map it.
    Private,
    /// One memfd mapped shared, so a vhost-user backend (virtiofsd) can map the
    /// same pages from the file descriptor it is sent.
    Shared,
}

/// Maps guest memory of `bytes` bytes.
///
/// Each region's host address is aligned to 2 MiB, as its guest address is. Where the
/// host backs it with transparent huge pages, KVM can then map each 2 MiB of guest
/// memory with one large page and one fault; with a misaligned mapping it maps 4 KiB
/// at a time whatever backs it. (In the lab this alone took the guest's early memory
/// setup and initramfs unpacking from about 1.4 s to 0.1 s.) hull does not ask for
/// huge pages itself: the host's THP policy decides.
pub fn create_guest_memory(bytes: u64, backing: Backing) -> Result<GuestMemory, MemoryError> {
    let regions = ram_regions(bytes)?;
    let file = match backing {
        Backing::Private => None,
        Backing::Shared => {
            Some(memfd(c"hull-guest-ram", bytes).map_err(|source| MemoryError::Memfd { bytes, source })?)
        }
    };
    let mut offset = 0u64;
    let mut mapped = Vec::with_capacity(regions.len());
    for (start, size) in regions {
        let file_offset = match &file {
            None => None,
            Some(file) => {
                let file = file
                    .try_clone()
                    .map_err(|source| MemoryError::Memfd { bytes, source })?;
                Some(FileOffset::new(file, offset))
            }
        };
        offset += size as u64;
        let region = map_region(size, file_offset).map_err(|source| MemoryError::Map { bytes, source })?;
        mapped.push(GuestRegionMmap::new(region, start).ok_or(MemoryError::Layout { bytes })?);
    }
    GuestMemory::from_regions(mapped).map_err(|_| MemoryError::Layout { bytes })
}

/// Alignment of a host huge page, and of every RAM region's host address.
const HUGE_PAGE: usize = 2 << 20;
/// An inaccessible page kept just below each RAM region. Without it the next mapping
/// the kernel places below (a thread stack, say) would end on a 2 MiB boundary and,
/// where THP is `always`, be backed by a huge page it does not need.
const GUARD: usize = 4 << 10;

/// Maps one RAM region of `size` bytes (a multiple of 1 MiB) at a 2 MiB-aligned host
/// address: anonymous and private, or `file_offset`'s file shared.
///
/// The mapping is never unmapped: guest memory lives as long as the VMM process, which
/// runs one VM, so every clone of the region handed to a device or vCPU thread stays
/// valid until exit.
fn map_region(size: usize, file_offset: Option<FileOffset>) -> io::Result<MmapRegion> {
    let reserve = size + HUGE_PAGE + GUARD;
    let anon = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE;
    // SAFETY: a new inaccessible anonymous mapping at an address the kernel picks; it
    // aliases nothing and the result is checked.
    let base = unsafe { libc::mmap(std::ptr::null_mut(), reserve, libc::PROT_NONE, anon, -1, 0) };
    if base == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    let base = base as usize;
    let ram = (base + GUARD).next_multiple_of(HUGE_PAGE);
    let prot = libc::PROT_READ | libc::PROT_WRITE;
    let (flags, fd, offset) = match &file_offset {
        None => (anon, -1, 0),
        Some(f) => (
            libc::MAP_SHARED | libc::MAP_NORESERVE,
            f.file().as_raw_fd(),
            f.start() as libc::off_t,
        ),
    };
    // SAFETY: [ram, ram + size) lies inside the reservation just made, which nothing
    // else uses, so MAP_FIXED replaces only our own inaccessible pages.
    let mapped = unsafe {
        libc::mmap(
            ram as *mut libc::c_void,
            size,
            prot,
            flags | libc::MAP_FIXED,
            fd,
            offset,
        )
    };
    if mapped == libc::MAP_FAILED {
        let error = io::Error::last_os_error();
        // SAFETY: the reservation is ours and nothing refers to it.
        unsafe { libc::munmap(base as *mut libc::c_void, reserve) };
        return Err(error);
    }
    let guard = ram - GUARD;
    let tail = ram + size;
    // SAFETY: the head of the reservation below the guard page and its tail above the
    // RAM are ours and unused.
    unsafe {
        if guard > base {
            libc::munmap(base as *mut libc::c_void, guard - base);
        }
        if base + reserve > tail {
            libc::munmap(tail as *mut libc::c_void, base + reserve - tail);
        }
    }
    let mut builder = MmapRegionBuilder::new(size).with_mmap_prot(prot).with_mmap_flags(flags);
    if let Some(file_offset) = file_offset {
        builder = builder.with_file_offset(file_offset);
    }
    // SAFETY: `ram` and `size` are exactly the mapping made above, which is never
    // unmapped (see above).
    unsafe { builder.with_raw_mmap_pointer(ram as *mut u8) }
        .build()
        .map_err(|e| io::Error::other(e.to_string()))
}

/// An anonymous memory file of `bytes` bytes (close-on-exec).
fn memfd(name: &CStr, bytes: u64) -> io::Result<File> {
    // SAFETY: memfd_create with a valid NUL-terminated name; the result is checked.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by memfd_create and is owned by nothing else.
    let file = unsafe { File::from_raw_fd(fd) };
    file.set_len(bytes)?;
    Ok(file)
}

/// End (exclusive) of the RAM below the MMIO hole.
pub fn low_ram_end(bytes: u64) -> u64 {
    bytes.min(MMIO_HOLE_START)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::GuestMemoryBackend;

    #[test]
    fn ram_regions_small_guest_is_one_region_from_zero() {
        let r = ram_regions(256 << 20).unwrap();
        assert_eq!(r, vec![(GuestAddress(0), 256 << 20)]);
    }

    #[test]
    fn ram_regions_large_guest_skips_the_mmio_hole() {
        let r = ram_regions(4 << 30).unwrap();
        assert_eq!(r[0], (GuestAddress(0), MMIO_HOLE_START as usize));
        assert_eq!(r[1], (GuestAddress(MMIO_HOLE_END), (1 << 30) as usize));
    }

    #[test]
    fn ram_regions_rejects_tiny_huge_and_unaligned_sizes() {
        for bytes in [0, 1 << 20, MAX_MEM_BYTES + (1 << 20), (64 << 20) + 1] {
            assert!(
                matches!(ram_regions(bytes), Err(MemoryError::BadSize { .. })),
                "{bytes}"
            );
        }
    }

    #[test]
    fn create_guest_memory_maps_the_requested_size() {
        let mem = create_guest_memory(32 << 20, Backing::Private).unwrap();
        assert_eq!(mem.last_addr(), GuestAddress((32 << 20) - 1));
    }

    #[test]
    fn every_region_sits_at_a_2_mib_aligned_host_address_with_a_guard_page_below() {
        use vm_memory::{Bytes, GuestMemoryRegion};
        for backing in [Backing::Private, Backing::Shared] {
            let mem = create_guest_memory(4 << 30, backing).unwrap();
            for region in mem.iter() {
                let host = region.as_ptr() as usize;
                assert_eq!(
                    host % HUGE_PAGE,
                    0,
                    "{backing:?} region at {:#x}",
                    region.start_addr().0
                );
                let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
                let guard = maps
                    .lines()
                    .find(|l| l.starts_with(&format!("{:x}-{:x} ", host - GUARD, host)));
                assert!(
                    guard.is_some_and(|l| l.split_whitespace().nth(1) == Some("---p")),
                    "{backing:?}: no inaccessible page below {host:#x}"
                );
            }
            mem.write_obj(0x5au8, GuestAddress(MMIO_HOLE_END + (1 << 30) - 1))
                .unwrap();
            assert_eq!(
                mem.read_obj::<u8>(GuestAddress(MMIO_HOLE_END + (1 << 30) - 1)).unwrap(),
                0x5a
            );
        }
    }

    #[test]
    fn shared_guest_memory_is_one_memfd_with_each_region_at_its_own_offset() {
        use vm_memory::{Bytes, GuestMemoryRegion};
        let mem = create_guest_memory(4 << 30, Backing::Shared).unwrap();
        let offsets: Vec<u64> = mem
            .iter()
            .map(|r| r.file_offset().expect("file backed").start())
            .collect();
        assert_eq!(offsets, vec![0, MMIO_HOLE_START]);
        mem.write_obj(0xabu8, GuestAddress(MMIO_HOLE_END)).unwrap();
        let region = mem.iter().nth(1).unwrap();
        let file = region.file_offset().unwrap().file();
        let mut byte = [0u8; 1];
        std::os::unix::fs::FileExt::read_exact_at(file, &mut byte, MMIO_HOLE_START).unwrap();
        assert_eq!(byte[0], 0xab, "a write through the mapping shows in the file");
    }
}
