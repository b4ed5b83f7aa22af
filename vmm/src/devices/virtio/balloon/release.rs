//! Giving a guest range's host pages back to the host kernel.
//!
//! A guest range is released only when it lies wholly inside one RAM region (a range
//! reaching past a region's end is refused, even where the next region would follow
//! on: in hull's layout the next region is beyond the MMIO hole anyway). It is
//! trimmed inward to whole host pages, so a page the guest did not give up entirely
//! is never touched. Private anonymous memory is released with `MADV_DONTNEED`; the
//! shared memfd that virtio-fs needs keeps its pages under `MADV_DONTNEED` (they
//! belong to the file), so there it is `MADV_REMOVE`, which frees the file's pages.
//! Either way the next touch of the range reads zeros.

use std::io;
use std::marker::PhantomData;

use thiserror::Error;
use vm_memory::{Address, GuestAddress, GuestMemoryBackend, GuestMemoryRegion};

use crate::memory::{Backing, GuestMemory};

/// Why a range was not released.
#[derive(Debug, Error)]
pub enum ReleaseError {
    /// the range is not wholly inside one guest RAM region (or its end overflows)
    #[error("range {addr:#x}+{len:#x} is not inside one guest RAM region")]
    OutsideRam {
        /// Guest address.
        addr: u64,
        /// Length in bytes.
        len: u64,
    },
    /// the host kernel refused to discard the pages
    #[error("madvise({advice}) of {len:#x} bytes failed")]
    Madvise {
        /// The advice given.
        advice: &'static str,
        /// Host bytes.
        len: usize,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// How the host gives guest pages back: the advice for the memory's backing, and the
/// host page size the ranges are trimmed to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Releaser {
    advice: libc::c_int,
    page_size: usize,
}

impl Releaser {
    /// A releaser for guest memory backed as `backing`, on this host's page size.
    pub fn new(backing: Backing) -> Self {
        Releaser::with_page_size(backing, host_page_size())
    }

    /// A releaser trimming to `page_size` (a power of two) bytes.
    pub fn with_page_size(backing: Backing, page_size: usize) -> Self {
        let advice = match backing {
            Backing::Private => libc::MADV_DONTNEED,
            Backing::Shared => libc::MADV_REMOVE,
        };
        Releaser { advice, page_size }
    }

    /// Releases the whole host pages inside guest range `addr..addr+len`; returns the
    /// host bytes released (0 when no whole page lies inside).
    pub fn release(&self, mem: &GuestMemory, addr: GuestAddress, len: u64) -> Result<usize, ReleaseError> {
        let pages = HostPages::inside(mem, addr, len, self.page_size).ok_or(ReleaseError::OutsideRam {
            addr: addr.raw_value(),
            len,
        })?;
        if pages.len == 0 {
            return Ok(0);
        }
        discard(&pages, self.advice).map_err(|source| ReleaseError::Madvise {
            advice: advice_name(self.advice),
            len: pages.len,
            source,
        })?;
        Ok(pages.len)
    }
}

/// The host's page size (4 KiB where `sysconf` cannot say).
fn host_page_size() -> usize {
    // SAFETY: sysconf takes no pointers.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size)
        .ok()
        .filter(|s| s.is_power_of_two())
        .unwrap_or(4096)
}

fn advice_name(advice: libc::c_int) -> &'static str {
    if advice == libc::MADV_REMOVE {
        "MADV_REMOVE"
    } else {
        "MADV_DONTNEED"
    }
}

/// Whole host pages inside one RAM region of the guest memory they borrow.
struct HostPages<'a> {
    start: usize,
    len: usize,
    _mem: PhantomData<&'a GuestMemory>,
}

impl<'a> HostPages<'a> {
    /// The whole host pages inside guest range `addr..addr+len`, or `None` when the
    /// range is not wholly inside one region of `mem`.
    fn inside(mem: &'a GuestMemory, addr: GuestAddress, len: u64, page_size: usize) -> Option<Self> {
        let region = mem.find_region(addr)?;
        let offset = addr.checked_offset_from(region.start_addr())?;
        let end = offset.checked_add(len).filter(|&end| end <= region.len())?;
        let base = region.as_ptr() as usize;
        let start = (base + offset as usize).checked_next_multiple_of(page_size)?;
        let end = (base + end as usize) & !(page_size - 1);
        Some(HostPages {
            start,
            len: end.saturating_sub(start),
            _mem: PhantomData,
        })
    }
}

/// Discards the contents of `pages`: the host frees them and the next access reads
/// zeros.
fn discard(pages: &HostPages<'_>, advice: libc::c_int) -> io::Result<()> {
    // SAFETY: `pages` lies inside one region of guest RAM (checked by
    // `HostPages::inside`), a mapping that the guest memory `pages` borrows keeps
    // alive for this call, and that hull never unmaps while the VM runs. The VMM keeps
    // no Rust references into guest RAM (every access is a volatile copy), so
    // replacing its contents with zeros breaks no invariant of this process; and the
    // guest gave these pages up (free page report or inflate), so it expects any
    // contents afterwards. MADV_DONTNEED and MADV_REMOVE change contents, never the
    // mapping itself.
    let rc = unsafe { libc::madvise(pages.start as *mut libc::c_void, pages.len, advice) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mem() -> GuestMemory {
        GuestMemory::from_ranges(&[(GuestAddress(0), 1 << 20), (GuestAddress(4 << 20), 1 << 20)]).unwrap()
    }

    #[test]
    fn host_pages_are_trimmed_inward_to_whole_pages() {
        let mem = mem();
        let base = mem.find_region(GuestAddress(0)).unwrap().as_ptr() as usize;
        let pages = HostPages::inside(&mem, GuestAddress(0x800), 0x2000, 0x1000).unwrap();
        assert_eq!((pages.start - base, pages.len), (0x1000, 0x1000));
        let pages = HostPages::inside(&mem, GuestAddress(0x800), 0x1000, 0x1000).unwrap();
        assert_eq!(pages.len, 0);
        let pages = HostPages::inside(&mem, GuestAddress(0x10_0000 - 0x1000), 0x1000, 0x1000).unwrap();
        assert_eq!((pages.start - base, pages.len), (0xf_f000, 0x1000));
    }

    #[test]
    fn host_pages_refuse_ranges_leaving_their_region() {
        let mem = mem();
        for (addr, len) in [
            (0x10_0000, 1),
            (0xf_f000, 0x2000),
            (0x40_0000 - 1, 2),
            (0x50_0000, 0),
            (0x1000, u64::MAX),
            (u64::MAX, 1),
        ] {
            assert!(
                HostPages::inside(&mem, GuestAddress(addr), len, 0x1000).is_none(),
                "{addr:#x}+{len:#x}"
            );
        }
    }

    #[test]
    fn the_advice_follows_the_backing() {
        let private = Releaser::with_page_size(Backing::Private, 4096);
        let shared = Releaser::with_page_size(Backing::Shared, 4096);
        assert_eq!(advice_name(private.advice), "MADV_DONTNEED");
        assert_eq!(advice_name(shared.advice), "MADV_REMOVE");
        assert!(host_page_size().is_power_of_two());
    }
}
