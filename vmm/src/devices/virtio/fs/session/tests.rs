use virtio_queue::{Queue, QueueT};
use vm_memory::{GuestAddress, GuestMemoryBackend as _, GuestMemoryRegion};

use super::*;
use crate::memory::{create_guest_memory, Backing, MMIO_HOLE_END};

fn queue(size: u16, desc: u64, avail: u64, used: u64) -> Queue {
    let mut q = Queue::new(1024).unwrap();
    q.set_size(size);
    q.set_desc_table_address(Some(desc as u32), Some((desc >> 32) as u32));
    q.set_avail_ring_address(Some(avail as u32), Some((avail >> 32) as u32));
    q.set_used_ring_address(Some(used as u32), Some((used >> 32) as u32));
    q.set_ready(true);
    q
}

fn host(mem: &GuestMemory, addr: u64) -> u64 {
    let r = mem.find_region(GuestAddress(addr)).unwrap();
    r.as_ptr() as u64 + (addr - r.start_addr().0)
}

#[test]
fn plan_hands_over_features_memory_and_every_ring_in_host_addresses() {
    let mem = create_guest_memory(64 << 20, Backing::Shared).unwrap();
    let queues = [
        queue(256, 0x10000, 0x20000, 0x30000),
        queue(1024, 0x40000, 0x50000, 0x60000),
    ];
    let steps = plan(&mem, &queues, VIRTIO_F_VERSION_1_FOR_TEST, true).unwrap();
    assert_eq!(steps[0], Step::Features(VIRTIO_F_VERSION_1_FOR_TEST | (1 << 30)));
    let Step::MemTable(table) = &steps[1] else {
        panic!("{:?}", steps[1])
    };
    assert_eq!(table, &vec![(0, 64 << 20, host(&mem, 0), 0)]);
    let expected_q1 = [
        Step::VringNum(1, 1024),
        Step::VringAddr {
            queue: 1,
            max_size: 1024,
            size: 1024,
            desc: host(&mem, 0x40000),
            used: host(&mem, 0x60000),
            avail: host(&mem, 0x50000),
        },
        Step::VringBase(1, 0),
        Step::VringCall(1),
        Step::VringKick(1),
        Step::VringEnable(1),
    ];
    assert_eq!(steps.len(), 2 + 2 * 6);
    assert_eq!(steps[8..], expected_q1[..]);
}

const VIRTIO_F_VERSION_1_FOR_TEST: u64 = 1 << 32;

#[test]
fn without_protocol_features_rings_are_not_enabled_explicitly() {
    let mem = create_guest_memory(32 << 20, Backing::Shared).unwrap();
    let steps = plan(&mem, &[queue(16, 0x1000, 0x2000, 0x3000)], 1 << 32, false).unwrap();
    assert_eq!(steps[0], Step::Features(1 << 32));
    assert!(!steps.iter().any(|s| matches!(s, Step::VringEnable(_))));
}

#[test]
fn plan_refuses_private_memory_the_backend_could_not_map() {
    let mem = create_guest_memory(32 << 20, Backing::Private).unwrap();
    assert!(matches!(
        plan(&mem, &[queue(16, 0x1000, 0x2000, 0x3000)], 1 << 32, false),
        Err(SessionError::PrivateMemory(0))
    ));
}

#[test]
fn a_ring_straddling_the_end_of_a_region_is_refused_not_translated() {
    let mem = create_guest_memory(32 << 20, Backing::Shared).unwrap();
    let end = 32u64 << 20;
    // The used ring of 1024 entries is 8198 bytes; it starts 4 KiB before the end of RAM.
    let err = plan(&mem, &[queue(1024, 0x1000, 0x8000, end - 4096)], 1 << 32, false).unwrap_err();
    assert!(
        matches!(
            err,
            SessionError::RingOutsideMemory {
                queue: 0,
                ring: "used ring",
                ..
            }
        ),
        "{err}"
    );
    // Entirely outside RAM (in the MMIO hole) and past the top of a large guest.
    for addr in [0xd000_0000u64, MMIO_HOLE_END + (1 << 40), u64::MAX - 15] {
        let err = plan(&mem, &[queue(16, addr, 0x2000, 0x3000)], 1 << 32, false).unwrap_err();
        assert!(
            matches!(
                err,
                SessionError::RingOutsideMemory {
                    ring: "descriptor table",
                    ..
                }
            ),
            "{err}"
        );
    }
}

#[test]
fn rings_in_the_high_region_translate_through_that_region() {
    let mem = create_guest_memory(4 << 30, Backing::Shared).unwrap();
    let desc = MMIO_HOLE_END + 0x1000;
    let steps = plan(&mem, &[queue(16, desc, 0x2000, 0x3000)], 1 << 32, false).unwrap();
    let Some(Step::VringAddr { desc: hva, .. }) = steps.iter().find(|s| matches!(s, Step::VringAddr { .. })) else {
        panic!("no VringAddr in {steps:?}")
    };
    assert_eq!(*hva, host(&mem, desc));
    let Step::MemTable(table) = &steps[1] else { panic!() };
    assert_eq!(table[1].0, MMIO_HOLE_END);
    assert_eq!(
        table[1].3,
        crate::memory::MMIO_HOLE_START,
        "file offset of the high region"
    );
}
