//! Reading descriptor chains defensively: every chain is bounded, every buffer is
//! checked against guest RAM before use, and a chain that does not end is refused.

use std::ops::Deref;

use thiserror::Error;
use virtio_queue::DescriptorChain;
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryBackend};

use super::MAX_QUEUE_SIZE;
use crate::memory::GuestMemory;

/// Bytes moved per copy between guest memory and a host file or socket.
pub const COPY_CHUNK: usize = 64 * 1024;

/// Why a descriptor chain was refused.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum ChainError {
    /// the chain has no descriptors
    #[error("empty descriptor chain")]
    Empty,
    /// the chain still points to a next descriptor after the length bound (a cycle)
    #[error("descriptor chain does not terminate within {MAX_QUEUE_SIZE} descriptors")]
    Unterminated,
    /// a buffer is not entirely inside guest RAM
    #[error("descriptor buffer {addr:#x}+{len:#x} is outside guest memory")]
    OutOfRange {
        /// Buffer address.
        addr: u64,
        /// Buffer length.
        len: u32,
    },
    /// a buffer has the wrong direction for its place in the request
    #[error("descriptor {index} has the wrong direction")]
    Direction {
        /// Position in the chain.
        index: usize,
    },
    /// the request is malformed for this device
    #[error("malformed request: {reason}")]
    Malformed {
        /// What is wrong.
        reason: &'static str,
    },
}

/// One buffer of a chain, already checked to lie inside guest RAM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Buffer {
    /// Guest address.
    pub addr: GuestAddress,
    /// Length in bytes.
    pub len: u32,
    /// Device-writable (driver reads it) or device-readable.
    pub writable: bool,
}

/// A whole request: the head index (for the used ring) and its buffers.
#[derive(Debug)]
pub struct Request {
    /// Head descriptor index.
    pub head: u16,
    /// Buffers in chain order.
    pub buffers: Vec<Buffer>,
}

/// Walks `chain`, checking every buffer. Bounded by [`MAX_QUEUE_SIZE`] descriptors.
pub fn read_chain<M>(chain: DescriptorChain<M>, mem: &GuestMemory) -> Result<Request, ChainError>
where
    M: Deref,
    M::Target: vm_memory::GuestMemory,
{
    let head = chain.head_index();
    let mut buffers = Vec::with_capacity(8);
    let mut last_has_next = false;
    for desc in chain.take(MAX_QUEUE_SIZE as usize + 1) {
        if buffers.len() == MAX_QUEUE_SIZE as usize {
            return Err(ChainError::Unterminated);
        }
        let buffer = Buffer {
            addr: desc.addr(),
            len: desc.len(),
            writable: desc.is_write_only(),
        };
        check_buffer(mem, &buffer)?;
        last_has_next = desc.has_next();
        buffers.push(buffer);
    }
    if buffers.is_empty() {
        return Err(ChainError::Empty);
    }
    if last_has_next {
        return Err(ChainError::Unterminated);
    }
    Ok(Request { head, buffers })
}

/// Checks that `buffer` lies entirely in guest RAM.
pub fn check_buffer(mem: &GuestMemory, buffer: &Buffer) -> Result<(), ChainError> {
    let out = ChainError::OutOfRange {
        addr: buffer.addr.raw_value(),
        len: buffer.len,
    };
    if buffer.len == 0 {
        return mem.check_address(buffer.addr).map(|_| ()).ok_or(out);
    }
    buffer.addr.checked_add(u64::from(buffer.len) - 1).ok_or(out.clone())?;
    if mem.check_range(buffer.addr, buffer.len as usize) {
        Ok(())
    } else {
        Err(out)
    }
}

/// The guest address `offset` bytes into `buffer`, refusing one that wraps.
fn offset_addr(buffer: &Buffer, offset: u32) -> Result<GuestAddress, ChainError> {
    buffer
        .addr
        .checked_add(u64::from(offset))
        .ok_or(ChainError::OutOfRange {
            addr: buffer.addr.0,
            len: buffer.len,
        })
}

/// Copies guest bytes of `buffer` starting at `offset` into `dst`; returns bytes copied.
pub fn read_buffer(mem: &GuestMemory, buffer: &Buffer, offset: u32, dst: &mut [u8]) -> Result<usize, ChainError> {
    let n = (buffer.len.saturating_sub(offset) as usize).min(dst.len());
    let addr = offset_addr(buffer, offset)?;
    mem.read_slice(&mut dst[..n], addr)
        .map_err(|_| ChainError::OutOfRange {
            addr: addr.0,
            len: n as u32,
        })?;
    Ok(n)
}

/// Copies `src` into guest `buffer` at `offset`; returns bytes copied.
pub fn write_buffer(mem: &GuestMemory, buffer: &Buffer, offset: u32, src: &[u8]) -> Result<usize, ChainError> {
    let n = (buffer.len.saturating_sub(offset) as usize).min(src.len());
    let addr = offset_addr(buffer, offset)?;
    mem.write_slice(&src[..n], addr).map_err(|_| ChainError::OutOfRange {
        addr: addr.0,
        len: n as u32,
    })?;
    Ok(n)
}

#[cfg(test)]
pub mod test_utils {
    //! Helpers for device tests: guest memory with a mock queue.

    use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
    use virtio_queue::mock::MockSplitQueue;
    use virtio_queue::{Queue, QueueOwnedT, QueueT};
    use vm_memory::GuestAddress;

    use crate::memory::GuestMemory;

    /// Size of test guest memory.
    pub const TEST_MEM: usize = 0x100_0000;
    /// Descriptor flag: another descriptor follows.
    pub const F_NEXT: u16 = 1;
    /// Descriptor flag: device-writable.
    pub const F_WRITE: u16 = 2;

    /// 16 MiB of guest memory.
    pub fn test_mem() -> GuestMemory {
        GuestMemory::from_ranges(&[(GuestAddress(0), TEST_MEM)]).unwrap()
    }

    /// A raw descriptor (the NEXT flag and `next` are kept as given).
    pub fn desc(addr: u64, len: u32, flags: u16, next: u16) -> RawDescriptor {
        RawDescriptor::from(SplitDescriptor::new(addr, len, flags, next))
    }

    /// Puts `descs` (with explicit next links) in the table and each chain head in
    /// the avail ring; returns the queue.
    pub fn queue_with(mem: &GuestMemory, size: u16, descs: &[RawDescriptor]) -> Queue {
        let mock = MockSplitQueue::new(mem, size);
        mock.add_desc_chains(descs, 0).unwrap();
        mock.create_queue().unwrap()
    }

    /// Pops the first chain of `queue`.
    pub fn first_chain<'a>(
        mem: &'a GuestMemory,
        queue: &mut Queue,
    ) -> Option<virtio_queue::DescriptorChain<&'a GuestMemory>> {
        queue.iter(mem).unwrap().next()
    }

    /// The (id, len) of used-ring element `i`.
    pub fn used_elem(mem: &GuestMemory, queue: &Queue, i: u16) -> (u32, u32) {
        use vm_memory::Bytes;
        let base = GuestAddress(queue.used_ring() + 4 + 8 * u64::from(i));
        let id: u32 = mem.read_obj(base).unwrap();
        let len: u32 = mem.read_obj(GuestAddress(base.0 + 4)).unwrap();
        (id, len)
    }

    /// The used ring's idx.
    pub fn used_idx(mem: &GuestMemory, queue: &Queue) -> u16 {
        use vm_memory::Bytes;
        mem.read_obj(GuestAddress(queue.used_ring() + 2)).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::test_utils::*;
    use super::*;

    #[test]
    fn read_chain_returns_checked_buffers_in_order() {
        let mem = test_mem();
        let mut q = queue_with(
            &mem,
            16,
            &[desc(0x10_0000, 16, F_NEXT, 1), desc(0x20_0000, 512, F_WRITE, 0)],
        );
        let req = read_chain(first_chain(&mem, &mut q).unwrap(), &mem).unwrap();
        assert_eq!(req.head, 0);
        assert_eq!(req.buffers.len(), 2);
        assert!(!req.buffers[0].writable && req.buffers[1].writable);
    }

    #[test]
    fn read_chain_refuses_a_descriptor_cycle() {
        let mem = test_mem();
        let mut q = queue_with(
            &mem,
            16,
            &[desc(0x10_0000, 16, F_NEXT, 1), desc(0x20_0000, 16, F_NEXT, 0)],
        );
        let err = read_chain(first_chain(&mem, &mut q).unwrap(), &mem).unwrap_err();
        assert_eq!(err, ChainError::Unterminated);
    }

    #[test]
    fn read_chain_refuses_buffers_outside_or_straddling_the_end_of_ram() {
        let mem = test_mem();
        let end = TEST_MEM as u64;
        for (addr, len) in [(end, 1), (end - 8, 16), (0x10_0000, u32::MAX), (u64::MAX - 3, 8)] {
            let mut q = queue_with(&mem, 16, &[desc(addr, len, 0, 0)]);
            let err = read_chain(first_chain(&mem, &mut q).unwrap(), &mem).unwrap_err();
            assert!(
                matches!(err, ChainError::OutOfRange { .. }),
                "{addr:#x}+{len:#x}: {err:?}"
            );
        }
    }

    #[test]
    fn read_chain_stops_at_next_index_out_of_range() {
        let mem = test_mem();
        let mut q = queue_with(&mem, 16, &[desc(0x10_0000, 16, F_NEXT, 200)]);
        let err = read_chain(first_chain(&mem, &mut q).unwrap(), &mem).unwrap_err();
        assert_eq!(err, ChainError::Unterminated);
    }

    #[test]
    fn read_and_write_buffer_copy_at_most_the_buffer() {
        let mem = test_mem();
        let buf = Buffer {
            addr: GuestAddress(0x30_0000),
            len: 4,
            writable: true,
        };
        assert_eq!(write_buffer(&mem, &buf, 2, b"abcdef").unwrap(), 2);
        let mut out = [0u8; 8];
        assert_eq!(read_buffer(&mem, &buf, 0, &mut out).unwrap(), 4);
        assert_eq!(&out[..4], b"\0\0ab");
    }
}

/// A request taken from the avail ring: parsed, or refused with its head index.
pub type Popped = Result<Request, (u16, ChainError)>;

/// Takes the next request from `queue`. `Err` means the ring itself is corrupt (the
/// avail index ran more than a queue size ahead): the device must be marked broken.
pub fn pop_request(queue: &mut virtio_queue::Queue, mem: &GuestMemory) -> Result<Option<Popped>, virtio_queue::Error> {
    use virtio_queue::QueueOwnedT;
    let mut iter = queue.iter(mem)?;
    let Some(chain) = iter.next() else {
        return Ok(None);
    };
    let head = chain.head_index();
    Ok(Some(read_chain(chain, mem).map_err(|e| (head, e))))
}

/// Returns `head` to the driver with `len` bytes written; false if the ring refused it.
pub fn complete(queue: &mut virtio_queue::Queue, mem: &GuestMemory, head: u16, len: u32) -> bool {
    use virtio_queue::QueueT;
    match queue.add_used(mem, head, len) {
        Ok(()) => true,
        Err(e) => {
            crate::warn_limited!("virtio: cannot return descriptor {head}: {e}");
            false
        }
    }
}
