//! virtio-fs hands its rings to the vhost-user backend as host addresses
//! (`session::plan`), over queues a hostile driver configured: sizes, ring addresses
//! (straddling region ends and the MMIO hole), next-avail index, ready bits. No
//! panic; every ring handed over lies inside one region's host mapping; a ring the
//! plan refuses really is outside; and queues the transport accepts at DRIVER_OK
//! (`is_valid`) can always be handed over.
#![no_main]

use libfuzzer_sys::fuzz_target;
use virtio_queue::{Queue, QueueT};
use vm_memory::{GuestMemoryBackend as _, GuestMemoryRegion};
use vmm::devices::virtio::fs::session::{plan, SessionError, Step};
use vmm::devices::virtio::fs::QUEUE_SIZE;
use vmm::memory::{create_guest_memory, Backing, GuestMemory, MMIO_HOLE_START};

const PROTOCOL_FEATURES: u64 = 1 << 30;

thread_local! {
    /// Private RAM (not shareable), small shared RAM, and shared RAM in two regions
    /// around the MMIO hole. Planning reads addresses only, so they are made once.
    static MEMORIES: [(GuestMemory, bool); 3] = [
        (create_guest_memory(32 << 20, Backing::Private).unwrap(), false),
        (create_guest_memory(32 << 20, Backing::Shared).unwrap(), true),
        (create_guest_memory(MMIO_HOLE_START + (32 << 20), Backing::Shared).unwrap(), true),
    ];
}

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let n = N.min(self.0.len());
        out[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        out
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.bytes())
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.bytes())
    }
    /// A guest address: mostly near the RAM regions' ends, sometimes anything.
    fn addr(&mut self) -> u64 {
        let raw = self.u64();
        if raw >> 63 == 1 {
            return raw;
        }
        let bases = [0, 32 << 20, MMIO_HOLE_START, 1 << 32, (1 << 32) + (32 << 20)];
        let base: u64 = bases[(raw & 7) as usize % bases.len()];
        base.wrapping_add((raw >> 3) as i16 as i64 as u64)
    }
}

/// Where `len` bytes at guest `addr` are in the VMM, if all in one region.
fn host_range(mem: &GuestMemory, addr: u64, len: u64) -> Option<u64> {
    mem.iter().find_map(|r| {
        let start = r.start_addr().0;
        let offset = addr.checked_sub(start)?;
        (offset.checked_add(len)? <= r.len()).then(|| r.as_ptr() as u64 + offset)
    })
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let [select, count] = input.bytes();
    let features = input.u64();
    let protocol = select & 0x80 != 0;
    let mut queues = Vec::new();
    for _ in 0..1 + count % 3 {
        let mut q = Queue::new(QUEUE_SIZE).unwrap();
        let [flags] = input.bytes();
        q.set_size(input.u16());
        for (i, addr) in [input.addr() & !15, input.addr() & !1, input.addr() & !3]
            .into_iter()
            .enumerate()
        {
            let (low, high) = (Some(addr as u32), Some((addr >> 32) as u32));
            match i {
                0 => q.set_desc_table_address(low, high),
                1 => q.set_avail_ring_address(low, high),
                _ => q.set_used_ring_address(low, high),
            }
        }
        q.set_next_avail(input.u16());
        q.set_ready(flags & 1 == 1);
        queues.push(q);
    }
    MEMORIES.with(|memories| {
        let (mem, shared) = &memories[usize::from(select & 0x7f) % memories.len()];
        let accepted = queues.iter().all(|q| q.is_valid(mem));
        match plan(mem, &queues, features, protocol) {
            Ok(steps) => {
                assert!(*shared, "private memory handed to the backend");
                let per_queue = if protocol { 6 } else { 5 };
                assert_eq!(steps.len(), 2 + per_queue * queues.len());
                let offered = features | if protocol { PROTOCOL_FEATURES } else { 0 };
                assert_eq!(steps[0], Step::Features(offered));
                for step in &steps {
                    let &Step::VringAddr {
                        queue,
                        max_size,
                        size,
                        desc,
                        used,
                        avail,
                    } = step
                    else {
                        continue;
                    };
                    let q = &queues[queue];
                    assert_eq!((max_size, size), (q.max_size(), q.size()));
                    let n = u64::from(size);
                    for (host, guest, len) in [
                        (desc, q.desc_table(), 16 * n),
                        (avail, q.avail_ring(), 6 + 2 * n),
                        (used, q.used_ring(), 6 + 8 * n),
                    ] {
                        assert_eq!(
                            Some(host),
                            host_range(mem, guest, len),
                            "ring handed over outside its region"
                        );
                    }
                }
            }
            Err(SessionError::PrivateMemory(_)) => assert!(!*shared),
            Err(SessionError::RingOutsideMemory { addr, len, .. }) => {
                assert!(host_range(mem, addr, len).is_none(), "a ring inside memory refused");
                assert!(!accepted, "the transport accepts queues the plan refuses");
            }
            Err(e) => panic!("planning cannot fail with {e}"),
        }
    });
});
