use std::io::Write;

use proptest::prelude::*;
use vm_memory::{Bytes, GuestAddress};

use super::*;
use crate::devices::virtio::chain::test_utils::*;
use virtio_queue::QueueT;

const HDR: u64 = 0x10_0000;
const DATA: u64 = 0x20_0000;
const STATUS: u64 = 0x30_0000;

fn disk(read_only: bool, len: usize) -> (Disk, tempfile::NamedTempFile) {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    let content: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    f.write_all(&content).unwrap();
    (Disk::open(f.path(), read_only, "disk-id").unwrap(), f)
}

fn header(mem: &GuestMemory, kind: u32, sector: u64) {
    mem.write_obj(kind, GuestAddress(HDR)).unwrap();
    mem.write_obj(sector, GuestAddress(HDR + 8)).unwrap();
    mem.write_obj(0xffu8, GuestAddress(STATUS)).unwrap();
}

fn request(mem: &GuestMemory, data_len: u32, data_flags: u16) -> Queue {
    queue_with(
        mem,
        16,
        &[
            desc(HDR, 16, F_NEXT, 1),
            desc(DATA, data_len, data_flags | F_NEXT, 2),
            desc(STATUS, 1, F_WRITE, 0),
        ],
    )
}

fn status(mem: &GuestMemory) -> u8 {
    mem.read_obj(GuestAddress(STATUS)).unwrap()
}

fn file_bytes(f: &tempfile::NamedTempFile) -> Vec<u8> {
    std::fs::read(f.path()).unwrap()
}

#[test]
fn block_read_copies_disk_sectors_into_guest_buffers() {
    let mem = test_mem();
    let (d, _f) = disk(true, 8192);
    header(&mem, VIRTIO_BLK_T_IN, 2);
    let mut q = request(&mem, 1024, F_WRITE);
    assert_eq!(process_queue(&mem, &d, &mut q).unwrap().completed, 1);
    assert_eq!(status(&mem), VIRTIO_BLK_S_OK);
    assert_eq!(used_elem(&mem, &q, 0), (0, 1025));
    let mut got = [0u8; 4];
    mem.read_slice(&mut got, GuestAddress(DATA)).unwrap();
    assert_eq!(
        got,
        [
            (1024 % 251) as u8,
            (1025 % 251) as u8,
            (1026 % 251) as u8,
            (1027 % 251) as u8
        ]
    );
}

#[test]
fn block_write_lands_in_a_writable_disk() {
    let mem = test_mem();
    let (d, f) = disk(false, 8192);
    header(&mem, VIRTIO_BLK_T_OUT, 1);
    mem.write_slice(&[0xee; 512], GuestAddress(DATA)).unwrap();
    let mut q = request(&mem, 512, 0);
    process_queue(&mem, &d, &mut q).unwrap();
    assert_eq!(status(&mem), VIRTIO_BLK_S_OK);
    assert_eq!(used_elem(&mem, &q, 0), (0, 1));
    assert_eq!(&file_bytes(&f)[512..1024], &[0xee; 512][..]);
}

#[test]
fn block_write_to_read_only_disk_fails_and_leaves_the_file_unchanged() {
    let mem = test_mem();
    let (d, f) = disk(true, 8192);
    let before = file_bytes(&f);
    header(&mem, VIRTIO_BLK_T_OUT, 0);
    mem.write_slice(&[0xee; 512], GuestAddress(DATA)).unwrap();
    let mut q = request(&mem, 512, 0);
    process_queue(&mem, &d, &mut q).unwrap();
    assert_eq!(status(&mem), VIRTIO_BLK_S_IOERR);
    assert_eq!(file_bytes(&f), before);
}

#[test]
fn block_sectors_past_the_end_or_overflowing_fail_with_ioerr() {
    for sector in [16, 15, u64::MAX / 512, u64::MAX] {
        let mem = test_mem();
        let (d, _f) = disk(false, 8192);
        header(&mem, VIRTIO_BLK_T_IN, sector);
        let mut q = request(&mem, 1024, F_WRITE);
        process_queue(&mem, &d, &mut q).unwrap();
        assert_eq!(status(&mem), VIRTIO_BLK_S_IOERR, "sector {sector}");
        assert_eq!(used_elem(&mem, &q, 0), (0, 1));
    }
}

#[test]
fn block_unknown_request_type_is_unsupported() {
    let mem = test_mem();
    let (d, _f) = disk(false, 4096);
    header(&mem, 0x1234, 0);
    let mut q = request(&mem, 512, F_WRITE);
    process_queue(&mem, &d, &mut q).unwrap();
    assert_eq!(status(&mem), VIRTIO_BLK_S_UNSUPP);
}

#[test]
fn block_flush_and_get_id_succeed() {
    let mem = test_mem();
    let (d, _f) = disk(false, 4096);
    header(&mem, VIRTIO_BLK_T_FLUSH, 0);
    let mut q = queue_with(&mem, 16, &[desc(HDR, 16, F_NEXT, 1), desc(STATUS, 1, F_WRITE, 0)]);
    process_queue(&mem, &d, &mut q).unwrap();
    assert_eq!(status(&mem), VIRTIO_BLK_S_OK);
    header(&mem, VIRTIO_BLK_T_GET_ID, 0);
    let mut q = request(&mem, 20, F_WRITE);
    process_queue(&mem, &d, &mut q).unwrap();
    assert_eq!(status(&mem), VIRTIO_BLK_S_OK);
    let mut id = [0u8; 7];
    mem.read_slice(&mut id, GuestAddress(DATA)).unwrap();
    assert_eq!(&id, b"disk-id");
}

#[test]
fn block_read_into_device_readable_buffer_is_refused() {
    let mem = test_mem();
    let (d, _f) = disk(false, 4096);
    header(&mem, VIRTIO_BLK_T_IN, 0);
    let mut q = request(&mem, 512, 0);
    process_queue(&mem, &d, &mut q).unwrap();
    assert_eq!(status(&mem), VIRTIO_BLK_S_IOERR);
    assert_eq!(mem.read_obj::<u8>(GuestAddress(DATA + 1)).unwrap(), 0);
}

#[test]
fn block_unaligned_data_length_fails() {
    let mem = test_mem();
    let (d, _f) = disk(false, 4096);
    header(&mem, VIRTIO_BLK_T_IN, 0);
    let mut q = request(&mem, 100, F_WRITE);
    process_queue(&mem, &d, &mut q).unwrap();
    assert_eq!(status(&mem), VIRTIO_BLK_S_IOERR);
}

#[test]
fn block_zero_length_or_readable_status_completes_with_nothing_written() {
    for (len, flags) in [(0, F_WRITE), (1, 0)] {
        let mem = test_mem();
        let (d, _f) = disk(false, 4096);
        header(&mem, VIRTIO_BLK_T_IN, 0);
        let mut q = queue_with(
            &mem,
            16,
            &[
                desc(HDR, 16, F_NEXT, 1),
                desc(DATA, 512, F_WRITE | F_NEXT, 2),
                desc(STATUS, len, flags, 0),
            ],
        );
        assert_eq!(process_queue(&mem, &d, &mut q).unwrap().completed, 1);
        assert_eq!(used_elem(&mem, &q, 0), (0, 0));
        assert_eq!(status(&mem), 0xff);
    }
}

#[test]
fn block_short_or_writable_header_fails() {
    for (len, flags) in [(8, 0), (16, F_WRITE)] {
        let mem = test_mem();
        let (d, _f) = disk(false, 4096);
        header(&mem, VIRTIO_BLK_T_IN, 0);
        let mut q = queue_with(
            &mem,
            16,
            &[desc(HDR, len, flags | F_NEXT, 1), desc(STATUS, 1, F_WRITE, 0)],
        );
        process_queue(&mem, &d, &mut q).unwrap();
        assert_eq!(status(&mem), VIRTIO_BLK_S_IOERR);
    }
}

#[test]
fn block_hostile_chains_complete_with_zero_length() {
    let end = TEST_MEM as u64;
    let cases = [
        vec![desc(HDR, 16, F_NEXT, 1), desc(DATA, 512, F_WRITE | F_NEXT, 0)],
        vec![
            desc(HDR, 16, F_NEXT, 1),
            desc(end - 256, 512, F_WRITE | F_NEXT, 2),
            desc(STATUS, 1, F_WRITE, 0),
        ],
        vec![
            desc(HDR, 16, F_NEXT, 1),
            desc(DATA, 0xffff_ffff, F_WRITE | F_NEXT, 2),
            desc(STATUS, 1, F_WRITE, 0),
        ],
        vec![desc(HDR, 16, F_NEXT, 1), desc(DATA, 512, F_WRITE | F_NEXT, 99)],
    ];
    for (i, descs) in cases.iter().enumerate() {
        let mem = test_mem();
        let (d, _f) = disk(false, 4096);
        header(&mem, VIRTIO_BLK_T_IN, 0);
        let mut q = queue_with(&mem, 16, descs);
        assert_eq!(process_queue(&mem, &d, &mut q).unwrap().completed, 1, "case {i}");
        assert_eq!(used_elem(&mem, &q, 0), (0, 0), "case {i}");
        assert_eq!(status(&mem), 0xff, "case {i}");
    }
}

#[test]
fn block_avail_index_ahead_of_queue_size_is_reported() {
    let mem = test_mem();
    let (d, _f) = disk(false, 4096);
    let mut q = request(&mem, 512, F_WRITE);
    mem.write_obj::<u16>(1000, GuestAddress(q.avail_ring() + 2)).unwrap();
    assert!(process_queue(&mem, &d, &mut q).is_err());
}

fn arb_desc() -> impl Strategy<Value = (u64, u32, u16, u16)> {
    (
        prop_oneof![
            Just(HDR),
            Just(DATA),
            Just(STATUS),
            Just(TEST_MEM as u64 - 8),
            any::<u64>()
        ],
        prop_oneof![Just(1u32), Just(16), Just(512), Just(0), Just(u32::MAX), any::<u32>()],
        0u16..8,
        0u16..20,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn block_random_requests_never_panic_or_touch_a_read_only_disk(
        descs in proptest::collection::vec(arb_desc(), 1..12),
        kind in prop_oneof![Just(0u32), Just(1), Just(4), Just(8), any::<u32>()],
        sector in prop_oneof![Just(0u64), Just(7), any::<u64>()],
    ) {
        let mem = test_mem();
        let (d, f) = disk(true, 4096);
        let before = file_bytes(&f);
        header(&mem, kind, sector);
        let raw: Vec<_> = descs.iter().map(|&(a, l, fl, n)| desc(a, l, fl, n)).collect();
        let mut q = queue_with(&mem, 16, &raw);
        let _ = process_queue(&mem, &d, &mut q);
        prop_assert_eq!(file_bytes(&f), before);
    }
}

/// A disk over `/dev/full`: every write fails with ENOSPC, as on a full host disk.
fn full_disk() -> Disk {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/full")
        .unwrap();
    Disk::from_file(file, 8192, false, "full")
}

#[test]
fn block_write_to_a_full_host_disk_waits_on_the_ring_instead_of_failing() {
    let mem = test_mem();
    let d = full_disk();
    header(&mem, VIRTIO_BLK_T_OUT, 0);
    let mut q = request(&mem, 512, 0);
    for pass in 0..2 {
        let served = process_queue(&mem, &d, &mut q).unwrap();
        assert_eq!(
            served,
            Served {
                completed: 0,
                waiting_for_space: true
            },
            "pass {pass}"
        );
        assert_eq!(status(&mem), 0xff, "no status written: the guest sees no error");
        assert_eq!(q.next_used(), 0, "nothing completed");
    }
    // Other failures are still errors: a write outside the disk fails at once.
    header(&mem, VIRTIO_BLK_T_OUT, 64);
    let mut q = request(&mem, 512, 0);
    assert_eq!(process_queue(&mem, &d, &mut q).unwrap().completed, 1);
    assert_eq!(status(&mem), VIRTIO_BLK_S_IOERR);
}
