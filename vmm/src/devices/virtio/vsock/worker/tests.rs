use std::io::{Read, Write};
use std::os::unix::io::RawFd;
use std::os::unix::net::UnixListener;
use std::time::Duration;

use vm_memory::{Bytes, GuestAddress};

use super::*;
use crate::devices::virtio::chain::test_utils::*;
use crate::devices::virtio::vsock::muxer::port_path;
use crate::devices::virtio::vsock::packet::{op, Header, TYPE_STREAM};
use crate::devices::virtio::vsock::HOST_CID;

struct NullRegistry;

impl Registry for NullRegistry {
    fn add(&mut self, _fd: RawFd, _token: u32, _events: EventSet) -> std::io::Result<()> {
        Ok(())
    }
    fn modify(&mut self, _fd: RawFd, _token: u32, _events: EventSet) -> std::io::Result<()> {
        Ok(())
    }
    fn remove(&mut self, _fd: RawFd) {}
}

fn write_header(mem: &GuestMemory, addr: u64, h: Header) {
    mem.write_slice(&h.to_bytes(), GuestAddress(addr)).unwrap();
}

fn request(src_port: u32, dst_port: u32) -> Header {
    Header {
        src_cid: 3,
        dst_cid: HOST_CID,
        src_port,
        dst_port,
        kind: TYPE_STREAM,
        op: op::REQUEST,
        buf_alloc: 65536,
        ..Default::default()
    }
}

#[test]
fn tx_request_then_rx_response_through_queues() {
    let dir = tempfile::tempdir().unwrap();
    let uds = dir.path().join("v.sock");
    let listener = UnixListener::bind(port_path(&uds, 700)).unwrap();
    let mut muxer = Muxer::new(3, &uds).unwrap();
    let mem = test_mem();
    let mut payload = vec![0u8; MAX_PKT_PAYLOAD];
    write_header(&mem, 0x10_0000, request(1, 700));
    let mut tx = queue_with(&mem, 16, &[desc(0x10_0000, 44, 0, 0)]);
    assert_eq!(
        process_tx(&mem, &mut tx, &mut muxer, &mut payload, &mut NullRegistry).unwrap(),
        1
    );
    let rx_mem_q = virtio_queue::mock::MockSplitQueue::create(&mem, GuestAddress(0x40_0000), 16);
    rx_mem_q
        .add_desc_chains(&[desc(0x50_0000, 4096, F_WRITE, 0)], 0)
        .unwrap();
    let mut rx: Queue = rx_mem_q.create_queue().unwrap();
    assert_eq!(
        fill_rx(&mem, &mut rx, &mut muxer, &mut payload, &mut NullRegistry).unwrap(),
        1
    );
    let mut raw = [0u8; 44];
    mem.read_slice(&mut raw, GuestAddress(0x50_0000)).unwrap();
    let h = Header::from_bytes(&raw);
    assert_eq!((h.op, h.src_port, h.dst_port), (op::RESPONSE, 700, 1));
    assert_eq!(used_elem(&mem, &rx, 0), (0, 44));

    let mut host = listener.accept().unwrap().0;
    host.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut rw = request(1, 700);
    (rw.op, rw.len) = (op::RW, 3);
    write_header(&mem, 0x11_0000, rw);
    mem.write_slice(b"xyz", GuestAddress(0x12_0000)).unwrap();
    let tx2 = virtio_queue::mock::MockSplitQueue::create(&mem, GuestAddress(0x60_0000), 16);
    tx2.add_desc_chains(&[desc(0x11_0000, 44, 1, 1), desc(0x12_0000, 3, 0, 0)], 0)
        .unwrap();
    let mut tx2: Queue = tx2.create_queue().unwrap();
    process_tx(&mem, &mut tx2, &mut muxer, &mut payload, &mut NullRegistry).unwrap();
    let mut got = [0u8; 3];
    host.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"xyz");
    host.write_all(b"!").unwrap();
}

#[test]
fn tx_packets_with_bad_lengths_or_directions_are_dropped_and_completed() {
    let dir = tempfile::tempdir().unwrap();
    let mut muxer = Muxer::new(3, &dir.path().join("v.sock")).unwrap();
    let mem = test_mem();
    let mut payload = vec![0u8; MAX_PKT_PAYLOAD];
    let mut h = request(1, 2);
    (h.op, h.len) = (op::RW, u32::MAX);
    write_header(&mem, 0x10_0000, h);
    let mut q = queue_with(
        &mem,
        16,
        &[
            desc(0x10_0000, 44, 0, 0),
            desc(0x10_0000, 44, F_WRITE, 0),
            desc(0x10_0000, 10, 0, 0),
            desc(TEST_MEM as u64 - 20, 44, 0, 0),
        ],
    );
    assert_eq!(
        process_tx(&mem, &mut q, &mut muxer, &mut payload, &mut NullRegistry).unwrap(),
        4
    );
    assert_eq!(muxer.connections(), 0);
    assert!(!muxer.has_rx());
}

#[test]
fn rx_chains_too_small_or_readable_are_returned_empty() {
    let dir = tempfile::tempdir().unwrap();
    let mut muxer = Muxer::new(3, &dir.path().join("v.sock")).unwrap();
    let mem = test_mem();
    let mut payload = vec![0u8; MAX_PKT_PAYLOAD];
    write_header(&mem, 0x10_0000, request(1, 999));
    let mut tx = queue_with(&mem, 16, &[desc(0x10_0000, 44, 0, 0)]);
    process_tx(&mem, &mut tx, &mut muxer, &mut payload, &mut NullRegistry).unwrap();
    let rxq = virtio_queue::mock::MockSplitQueue::create(&mem, GuestAddress(0x40_0000), 16);
    rxq.add_desc_chains(
        &[
            desc(0x50_0000, 10, F_WRITE, 0),
            desc(0x50_0000, 100, 0, 0),
            desc(0x50_0000, 100, F_WRITE, 0),
        ],
        0,
    )
    .unwrap();
    let mut rx: Queue = rxq.create_queue().unwrap();
    assert_eq!(
        fill_rx(&mem, &mut rx, &mut muxer, &mut payload, &mut NullRegistry).unwrap(),
        3
    );
    assert_eq!(used_elem(&mem, &rx, 0), (0, 0));
    assert_eq!(used_elem(&mem, &rx, 1), (1, 0));
    assert_eq!(used_elem(&mem, &rx, 2), (2, 44));
}

#[test]
fn rx_without_pending_packets_leaves_buffers_with_the_device() {
    let dir = tempfile::tempdir().unwrap();
    let mut muxer = Muxer::new(3, &dir.path().join("v.sock")).unwrap();
    let mem = test_mem();
    let mut payload = vec![0u8; MAX_PKT_PAYLOAD];
    let mut rx = queue_with(&mem, 16, &[desc(0x50_0000, 4096, F_WRITE, 0)]);
    assert_eq!(
        fill_rx(&mem, &mut rx, &mut muxer, &mut payload, &mut NullRegistry).unwrap(),
        0
    );
    assert_eq!(used_idx(&mem, &rx), 0);
}
