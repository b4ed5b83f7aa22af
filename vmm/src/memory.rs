//! Guest physical memory: the layout and the mapping that backs it.
//!
//! RAM starts at 0. When it would reach into the 32-bit MMIO hole it is split in two
//! regions, the second starting at 4 GiB. Devices live in the hole.

use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::os::fd::FromRawFd;

use thiserror::Error;
use vm_memory::{FileOffset, GuestAddress, GuestMemoryMmap};

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
        source: vm_memory::mmap::FromRangesError,
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
pub fn create_guest_memory(bytes: u64, backing: Backing) -> Result<GuestMemory, MemoryError> {
    let regions = ram_regions(bytes)?;
    match backing {
        Backing::Private => GuestMemory::from_ranges(&regions).map_err(|source| MemoryError::Map { bytes, source }),
        Backing::Shared => {
            let file = memfd(c"hull-guest-ram", bytes).map_err(|source| MemoryError::Memfd { bytes, source })?;
            let mut offset = 0u64;
            let mut ranges = Vec::with_capacity(regions.len());
            for (start, size) in regions {
                let file = file
                    .try_clone()
                    .map_err(|source| MemoryError::Memfd { bytes, source })?;
                ranges.push((start, size, Some(FileOffset::new(file, offset))));
                offset += size as u64;
            }
            GuestMemory::from_ranges_with_files(&ranges).map_err(|source| MemoryError::Map { bytes, source })
        }
    }
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
