use std::sync::Arc;

use proptest::prelude::*;
use virtio_queue::mock::MockSplitQueue;
use virtio_queue::QueueT;
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryRegion};

use super::*;
use crate::bus::BusDevice;
use crate::devices::virtio::balloon::device::VIRTIO_BALLOON_F_PAGE_REPORTING;
use crate::devices::virtio::balloon::Balloon;
use crate::devices::virtio::chain::test_utils::*;
use crate::devices::virtio::mmio::{reg, status};
use crate::devices::virtio::{Interrupt, MmioTransport, VirtioDevice};
use crate::devices::IrqLine;
use crate::event_loop::EventLoop;
use crate::memory::{create_guest_memory, Backing, MMIO_HOLE_END, MMIO_HOLE_START};

/// A free block as Linux reports it: 2 MiB, 2 MiB-aligned.
const BLOCK: u64 = 2 << 20;
const REPORT: u64 = 0x40_0000;
const PFNS: u64 = 0x10_0000;
const PATTERN: u8 = 0xa5;

fn private() -> Releaser {
    Releaser::new(Backing::Private)
}

fn fill(mem: &GuestMemory, addr: u64, len: u64) {
    mem.write_slice(&vec![PATTERN; len as usize], GuestAddress(addr))
        .unwrap();
}

fn bytes(mem: &GuestMemory, addr: u64, len: u64) -> Vec<u8> {
    let mut v = vec![0u8; len as usize];
    mem.read_slice(&mut v, GuestAddress(addr)).unwrap();
    v
}

fn all(mem: &GuestMemory, addr: u64, len: u64, value: u8) -> bool {
    bytes(mem, addr, len).iter().all(|&b| b == value)
}

/// Whether any host page behind guest range `addr..addr+len` is resident.
fn resident(mem: &GuestMemory, addr: u64, len: u64) -> bool {
    let host = mem.get_host_address(GuestAddress(addr)).unwrap();
    let mut vec = vec![0u8; (len / 4096) as usize];
    // SAFETY: mincore over a page-aligned range of guest RAM into a vector of one byte
    // per page.
    let rc = unsafe { libc::mincore(host.cast(), len as usize, vec.as_mut_ptr()) };
    assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
    vec.iter().any(|&b| b & 1 != 0)
}

fn report(mem: &GuestMemory, releaser: &Releaser, descs: &[virtio_queue::desc::RawDescriptor]) -> (Queue, Counts) {
    let stats = BalloonStats::default();
    let mut q = queue_with(mem, 16, descs);
    assert_eq!(process_reporting(mem, &mut q, releaser, &stats).unwrap(), 1);
    assert_eq!(used_elem(mem, &q, 0), (0, 0), "returned with nothing written");
    (q, stats.counts())
}

#[test]
fn a_reported_block_is_released_and_reads_back_zeros() {
    let mem = test_mem();
    fill(&mem, REPORT - 4096, BLOCK + 8192);
    assert!(resident(&mem, REPORT, BLOCK));
    let (_, counts) = report(&mem, &private(), &[desc(REPORT, BLOCK as u32, F_WRITE, 0)]);
    assert!(!resident(&mem, REPORT, BLOCK), "host pages freed");
    assert!(all(&mem, REPORT, BLOCK, 0));
    assert!(all(&mem, REPORT - 4096, 4096, PATTERN), "the page below is kept");
    assert!(all(&mem, REPORT + BLOCK, 4096, PATTERN), "the page above is kept");
    assert_eq!(
        counts,
        Counts {
            reported: BLOCK,
            released: BLOCK,
            ..Counts::default()
        }
    );
}

#[test]
fn every_block_of_a_chain_is_released() {
    let mem = test_mem();
    fill(&mem, REPORT, 3 * BLOCK);
    let descs = [
        desc(REPORT, BLOCK as u32, F_WRITE | F_NEXT, 1),
        desc(REPORT + 2 * BLOCK, BLOCK as u32, F_WRITE, 0),
    ];
    let (_, counts) = report(&mem, &private(), &descs);
    assert!(all(&mem, REPORT, BLOCK, 0));
    assert!(all(&mem, REPORT + BLOCK, BLOCK, PATTERN), "not reported, kept");
    assert!(all(&mem, REPORT + 2 * BLOCK, BLOCK, 0));
    assert_eq!((counts.reported, counts.released), (2 * BLOCK, 2 * BLOCK));
}

#[test]
fn a_range_not_on_page_boundaries_releases_only_the_whole_pages_inside() {
    let mem = test_mem();
    fill(&mem, REPORT, 0x4000);
    let (_, counts) = report(&mem, &private(), &[desc(REPORT + 0x800, 0x2000, F_WRITE, 0)]);
    assert!(all(&mem, REPORT, 0x1000, PATTERN));
    assert!(all(&mem, REPORT + 0x1000, 0x1000, 0));
    assert!(all(&mem, REPORT + 0x2000, 0x2000, PATTERN));
    assert_eq!((counts.reported, counts.released), (0x2000, 0x1000));
}

#[test]
fn shared_memory_is_released_from_the_memory_file() {
    let mem = create_guest_memory(32 << 20, Backing::Shared).unwrap();
    fill(&mem, REPORT, BLOCK);
    let releaser = Releaser::new(Backing::Shared);
    let (_, counts) = report(&mem, &releaser, &[desc(REPORT, BLOCK as u32, F_WRITE, 0)]);
    assert_eq!(counts.failed, 0, "MADV_REMOVE works on the memfd");
    assert!(all(&mem, REPORT, BLOCK, 0));
    let file = mem.iter().next().unwrap().file_offset().unwrap().file();
    let mut byte = [0xffu8; 1];
    std::os::unix::fs::FileExt::read_exact_at(file, &mut byte, REPORT + 100).unwrap();
    assert_eq!(byte[0], 0, "the file's pages are gone, not only the mapping's");
}

#[test]
fn ranges_outside_or_straddling_the_end_of_ram_are_refused_and_returned() {
    let end = TEST_MEM as u64;
    for (addr, len) in [
        (end, BLOCK as u32),
        (end - (1 << 20), BLOCK as u32),
        (REPORT, u32::MAX),
        (u64::MAX - 0xfff, 0x2000),
        (u64::MAX, 1),
    ] {
        let mem = test_mem();
        fill(&mem, end - BLOCK, BLOCK);
        fill(&mem, REPORT, BLOCK);
        let (_, counts) = report(&mem, &private(), &[desc(addr, len, F_WRITE, 0)]);
        assert_eq!(
            counts,
            Counts {
                refused: 1,
                ..Counts::default()
            },
            "{addr:#x}+{len:#x}"
        );
        assert!(all(&mem, end - BLOCK, BLOCK, PATTERN), "{addr:#x}+{len:#x}");
        assert!(all(&mem, REPORT, BLOCK, PATTERN), "{addr:#x}+{len:#x}");
    }
}

#[test]
fn a_range_straddling_the_mmio_hole_is_refused_and_high_ram_is_released() {
    let mem = create_guest_memory(MMIO_HOLE_START + (32 << 20), Backing::Private).unwrap();
    fill(&mem, MMIO_HOLE_START - BLOCK, BLOCK);
    fill(&mem, MMIO_HOLE_END, BLOCK);
    let straddling = desc(MMIO_HOLE_START - BLOCK / 2, BLOCK as u32, F_WRITE, 0);
    let (_, counts) = report(&mem, &private(), &[straddling]);
    assert_eq!(counts.refused, 1);
    assert!(all(&mem, MMIO_HOLE_START - BLOCK, BLOCK, PATTERN));
    let (_, counts) = report(&mem, &private(), &[desc(MMIO_HOLE_END, BLOCK as u32, F_WRITE, 0)]);
    assert_eq!((counts.released, counts.refused), (BLOCK, 0));
    assert!(all(&mem, MMIO_HOLE_END, BLOCK, 0));
}

#[test]
fn a_range_across_two_adjoining_regions_is_refused() {
    // The chain check accepts it (the bytes are all RAM); the release does not.
    let half = TEST_MEM / 2;
    let mem = GuestMemory::from_ranges(&[(GuestAddress(0), half), (GuestAddress(half as u64), half)]).unwrap();
    let across = half as u64 - (1 << 20);
    fill(&mem, across, BLOCK);
    let (_, counts) = report(&mem, &private(), &[desc(across, BLOCK as u32, F_WRITE, 0)]);
    assert_eq!(counts.refused, 1);
    assert!(all(&mem, across, BLOCK, PATTERN));
}

#[test]
fn a_report_with_a_device_readable_buffer_releases_nothing() {
    let mem = test_mem();
    fill(&mem, REPORT, 2 * BLOCK);
    let descs = [
        desc(REPORT, BLOCK as u32, F_WRITE | F_NEXT, 1),
        desc(REPORT + BLOCK, BLOCK as u32, 0, 0),
    ];
    let (_, counts) = report(&mem, &private(), &descs);
    assert_eq!(counts.refused, 1);
    assert_eq!(counts.released, 0);
    assert!(all(&mem, REPORT, 2 * BLOCK, PATTERN));
}

fn inflate(mem: &GuestMemory, pfns: &[u32], flags: u16) -> Counts {
    let raw: Vec<u8> = pfns.iter().flat_map(|p| p.to_le_bytes()).collect();
    mem.write_slice(&raw, GuestAddress(PFNS)).unwrap();
    let stats = BalloonStats::default();
    let mut q = queue_with(mem, 16, &[desc(PFNS, raw.len() as u32, flags, 0)]);
    assert_eq!(process_inflate(mem, &mut q, &private(), &stats).unwrap(), 1);
    assert_eq!(used_elem(mem, &q, 0), (0, 0));
    stats.counts()
}

#[test]
fn inflated_pages_are_released_and_pfns_outside_ram_refused() {
    let mem = test_mem();
    fill(&mem, REPORT, 0x3000);
    let first = (REPORT >> VIRTIO_BALLOON_PFN_SHIFT) as u32;
    let past_end = (TEST_MEM >> VIRTIO_BALLOON_PFN_SHIFT) as u32;
    let counts = inflate(&mem, &[first, past_end, u32::MAX, first + 2], 0);
    assert_eq!(
        counts,
        Counts {
            inflated: 0x2000,
            released: 0x2000,
            refused: 2,
            ..Counts::default()
        }
    );
    assert!(all(&mem, REPORT, 0x1000, 0));
    assert!(all(&mem, REPORT + 0x1000, 0x1000, PATTERN));
    assert!(all(&mem, REPORT + 0x2000, 0x1000, 0));
}

#[test]
fn malformed_inflate_requests_release_nothing() {
    let pfn = (REPORT >> VIRTIO_BALLOON_PFN_SHIFT) as u32;
    for (flags, extra) in [(F_WRITE, 0usize), (0, 2)] {
        let mem = test_mem();
        fill(&mem, REPORT, 0x1000);
        let raw: Vec<u8> = pfn
            .to_le_bytes()
            .into_iter()
            .chain(std::iter::repeat_n(0, extra))
            .collect();
        mem.write_slice(&raw, GuestAddress(PFNS)).unwrap();
        let stats = BalloonStats::default();
        let mut q = queue_with(&mem, 16, &[desc(PFNS, raw.len() as u32, flags, 0)]);
        assert_eq!(process_inflate(&mem, &mut q, &private(), &stats).unwrap(), 1);
        assert_eq!(stats.counts().refused, 1, "flags {flags} extra {extra}");
        assert!(all(&mem, REPORT, 0x1000, PATTERN));
    }
}

#[test]
fn an_inflate_request_is_served_for_a_bounded_number_of_pfns() {
    let mem = test_mem();
    let pfn = (REPORT >> VIRTIO_BALLOON_PFN_SHIFT) as u32;
    let counts = inflate(&mem, &vec![pfn; MAX_PFNS_PER_REQUEST + 10], 0);
    assert_eq!(counts.inflated, MAX_PFNS_PER_REQUEST as u64 * 4096);
    assert_eq!(counts.refused, 10);
}

#[test]
fn deflate_requests_are_returned_untouched() {
    let mem = test_mem();
    fill(&mem, REPORT, 0x1000);
    let pfn = (REPORT >> VIRTIO_BALLOON_PFN_SHIFT) as u32;
    mem.write_obj(pfn, GuestAddress(PFNS)).unwrap();
    let stats = BalloonStats::default();
    let mut q = queue_with(&mem, 16, &[desc(PFNS, 4, 0, 0), desc(PFNS, 4, 0, 0)]);
    assert_eq!(process_deflate(&mem, &mut q, &stats).unwrap(), 2);
    assert_eq!(used_idx(&mem, &q), 2);
    assert_eq!(stats.counts(), Counts::default());
    assert!(all(&mem, REPORT, 0x1000, PATTERN));
}

#[test]
fn a_corrupt_avail_index_is_reported() {
    let mem = test_mem();
    let mut q = queue_with(&mem, 16, &[desc(REPORT, 4096, F_WRITE, 0)]);
    mem.write_obj::<u16>(100, GuestAddress(q.avail_ring() + 2)).unwrap();
    let stats = BalloonStats::default();
    assert!(process_reporting(&mem, &mut q, &private(), &stats).is_err());
}

#[test]
fn the_summary_is_said_only_when_the_guest_used_the_device() {
    let stats = BalloonStats::default();
    assert_eq!(stats.summary(), None);
    BalloonStats::add(&stats.reported, BLOCK);
    BalloonStats::add(&stats.released, BLOCK);
    let line = stats.summary().unwrap();
    assert!(line.starts_with("vmm: balloon: 2097152 bytes reported free"), "{line}");
    assert!(line.contains("2097152 bytes released to the host"), "{line}");
}

/// Drives the balloon as Linux does: the queues it sets up, in order, behind the
/// transport, with a real event loop running the worker.
struct Driven<'a> {
    t: MmioTransport,
    event_loop: EventLoop,
    queues: Vec<MockSplitQueue<'a, GuestMemory>>,
    stats: Arc<BalloonStats>,
}

fn write32(t: &mut MmioTransport, offset: u64, value: u32) {
    t.write(offset, &value.to_le_bytes());
}

fn bring_up(mem: &GuestMemory, features: u64) -> Driven<'_> {
    let balloon = Balloon::new(Backing::Private);
    let stats = balloon.stats();
    let count = balloon.queue_count(features);
    let (event_loop, handle) = EventLoop::new().unwrap();
    let interrupt = Interrupt::new(IrqLine::new(5).unwrap());
    let mut t = MmioTransport::new(Box::new(balloon), mem.clone(), interrupt, Arc::new(handle)).unwrap();
    write32(&mut t, reg::STATUS, status::ACKNOWLEDGE);
    write32(&mut t, reg::STATUS, status::ACKNOWLEDGE | status::DRIVER);
    for sel in 0..2 {
        write32(&mut t, reg::DRIVER_FEATURES_SEL, sel);
        write32(&mut t, reg::DRIVER_FEATURES, (features >> (32 * sel)) as u32);
    }
    let ok = status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK;
    write32(&mut t, reg::STATUS, ok);
    let queues: Vec<_> = (0..count)
        .map(|i| MockSplitQueue::create(mem, GuestAddress(0x1_0000 * (i as u64 + 1)), 32))
        .collect();
    for (i, q) in queues.iter().enumerate() {
        write32(&mut t, reg::QUEUE_SEL, i as u32);
        write32(&mut t, reg::QUEUE_NUM, 32);
        write32(&mut t, reg::QUEUE_DESC_LOW, q.desc_table_addr().0 as u32);
        write32(&mut t, reg::QUEUE_AVAIL_LOW, q.avail_addr().0 as u32);
        write32(&mut t, reg::QUEUE_USED_LOW, q.used_addr().0 as u32);
        write32(&mut t, reg::QUEUE_READY, 1);
    }
    write32(&mut t, reg::STATUS, ok | status::DRIVER_OK);
    let mut driven = Driven {
        t,
        event_loop,
        queues,
        stats,
    };
    driven.event_loop.run_once(0).unwrap();
    driven
}

impl Driven<'_> {
    fn kick(&mut self, queue: u32) {
        write32(&mut self.t, reg::QUEUE_NOTIFY, queue);
        self.event_loop.run_once(100).unwrap();
    }

    fn used_idx(&self, mem: &GuestMemory, queue: usize) -> u16 {
        mem.read_obj(self.queues[queue].used_addr().unchecked_add(2)).unwrap()
    }
}

#[test]
fn through_the_transport_reports_arrive_on_queue_2_when_negotiated() {
    let mem = test_mem();
    fill(&mem, REPORT, BLOCK);
    let features = crate::devices::virtio::VIRTIO_F_VERSION_1 | VIRTIO_BALLOON_F_PAGE_REPORTING;
    let mut d = bring_up(&mem, features);
    assert!(d.t.is_active(), "three queues handed over");
    assert_eq!(d.event_loop.subscribers(), 1);
    d.queues[REPORTINGQ]
        .add_desc_chains(&[desc(REPORT, BLOCK as u32, F_WRITE, 0)], 0)
        .unwrap();
    d.kick(REPORTINGQ as u32);
    assert_eq!(d.used_idx(&mem, REPORTINGQ), 1);
    assert!(all(&mem, REPORT, BLOCK, 0));
    assert_eq!(d.stats.counts().released, BLOCK);
    assert_ne!(d.t.status() & status::DRIVER_OK, 0);
}

#[test]
fn through_the_transport_two_queues_suffice_without_reporting() {
    let mem = test_mem();
    let mut d = bring_up(&mem, crate::devices::virtio::VIRTIO_F_VERSION_1);
    assert!(d.t.is_active(), "queue 2 was never set up, and need not be");
    assert_eq!(d.event_loop.subscribers(), 1);
    d.queues[DEFLATEQ].add_desc_chains(&[desc(PFNS, 4, 0, 0)], 0).unwrap();
    d.kick(DEFLATEQ as u32);
    assert_eq!(d.used_idx(&mem, DEFLATEQ), 1);
    // A notification of the queue that is not in use reaches no one.
    write32(&mut d.t, reg::QUEUE_NOTIFY, REPORTINGQ as u32);
    assert_eq!(d.event_loop.run_once(0).unwrap(), 0);
}

#[test]
fn through_the_transport_the_driver_writes_actual_and_nothing_else() {
    let mem = test_mem();
    let mut d = bring_up(&mem, crate::devices::virtio::VIRTIO_F_VERSION_1);
    let read = |t: &mut MmioTransport, offset: u64| {
        let mut data = [0u8; 4];
        t.read(reg::CONFIG + offset, &mut data);
        u32::from_le_bytes(data)
    };
    write32(&mut d.t, reg::CONFIG + 4, 3);
    write32(&mut d.t, reg::CONFIG, 99);
    write32(&mut d.t, reg::CONFIG + 12, 0xaa);
    assert_eq!(read(&mut d.t, 4), 3, "actual");
    assert_eq!(read(&mut d.t, 0), 0, "num_pages");
    assert_eq!(read(&mut d.t, 12), 0, "poison_val");
}

fn arb_desc() -> impl Strategy<Value = (u64, u32, u16, u16)> {
    let end = TEST_MEM as u64;
    (
        prop_oneof![
            Just(REPORT),
            Just(REPORT + 0x800),
            Just(PFNS),
            Just(end - (1 << 20)),
            Just(end - 8),
            Just(end),
            Just(u64::MAX - 0xfff),
            any::<u64>()
        ],
        prop_oneof![
            Just(BLOCK as u32),
            Just(4096u32),
            Just(4),
            Just(0),
            Just(6),
            Just(u32::MAX),
            any::<u32>()
        ],
        0u16..8,
        0u16..20,
    )
}

/// Whether a descriptor's buffer lies in RAM and covers part of `addr..addr+len`.
fn covers(d: &(u64, u32, u16, u16), addr: u64, len: u64) -> bool {
    let start = d.0;
    let end = start.saturating_add(u64::from(d.1));
    start < addr + len && end > addr && end <= TEST_MEM as u64
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn random_chains_never_panic_and_are_all_returned(
        queue in 0usize..3,
        descs in proptest::collection::vec(arb_desc(), 1..12),
        pfns in proptest::collection::vec(any::<u32>(), 0..64),
    ) {
        // All of RAM but the rings' page holds the pattern, which read as PFNs lies
        // outside RAM. A sentinel page no descriptor starts in may change only under a
        // buffer covering it.
        let sentinel = 0x20_0000;
        let mem = test_mem();
        fill(&mem, 0x1000, TEST_MEM as u64 - 0x1000);
        let raw_pfns: Vec<u8> = pfns.iter().flat_map(|p| p.to_le_bytes()).collect();
        mem.write_slice(&raw_pfns, GuestAddress(PFNS)).unwrap();
        let raw: Vec<_> = descs.iter().map(|&(a, l, f, n)| desc(a, l, f, n)).collect();
        let mut q = queue_with(&mem, 16, &raw);
        let heads = 1 + descs.windows(2).filter(|w| w[0].2 & F_NEXT == 0).count();
        let stats = BalloonStats::default();
        let releaser = private();
        let result = match queue {
            INFLATEQ => process_inflate(&mem, &mut q, &releaser, &stats),
            DEFLATEQ => process_deflate(&mem, &mut q, &stats),
            _ => process_reporting(&mem, &mut q, &releaser, &stats),
        };
        prop_assert_eq!(result.unwrap(), heads);
        prop_assert_eq!(usize::from(used_idx(&mem, &q)), heads);
        let counts = stats.counts();
        prop_assert!(counts.released <= counts.reported + counts.inflated);
        if queue == REPORTINGQ && !descs.iter().any(|d| covers(d, sentinel, 4096)) {
            prop_assert!(all(&mem, sentinel, 4096, PATTERN));
        }
        if queue == DEFLATEQ {
            prop_assert_eq!(counts.released, 0);
        }
    }
}

#[test]
fn guest_memory_regions_here_are_what_the_tests_assume() {
    let mem = test_mem();
    assert_eq!(mem.num_regions(), 1);
    assert_eq!(mem.iter().next().unwrap().len(), TEST_MEM as u64);
}
