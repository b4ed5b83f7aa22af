//! Shared set-up: guest memory seeded with the fuzz input and a split queue on it.

use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress};
use vmm::memory::GuestMemory;

/// Guest RAM size for fuzzing: small, so random addresses often straddle its end.
pub const MEM_SIZE: usize = 0x2_0000;
/// Queue size used by the targets.
pub const QUEUE_SIZE: u16 = 16;

/// Memory whose first bytes are `data` (descriptor table, rings, buffers).
pub fn memory(data: &[u8]) -> GuestMemory {
    let mem = GuestMemory::from_ranges(&[(GuestAddress(0), MEM_SIZE)]).unwrap();
    let n = data.len().min(MEM_SIZE);
    mem.write_slice(&data[..n], GuestAddress(0)).unwrap();
    mem
}

/// A ready queue: descriptors at 0, avail ring at 0x100, used ring at 0x200.
pub fn queue(base: u64) -> Queue {
    let mut q = Queue::new(QUEUE_SIZE).unwrap();
    q.set_size(QUEUE_SIZE);
    q.set_desc_table_address(Some(base as u32), Some(0));
    q.set_avail_ring_address(Some(base as u32 + 0x100), Some(0));
    q.set_used_ring_address(Some(base as u32 + 0x200), Some(0));
    q.set_ready(true);
    q
}
