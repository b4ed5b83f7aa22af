use proptest::prelude::*;
use vm_memory::{Bytes, GuestAddress};

use super::*;
use crate::devices::virtio::chain::test_utils::*;
use crate::devices::virtio::net::filter::EgressPolicy;

/// An Ethernet frame carrying the start of an IPv4 packet to `dst`, then `tail`.
fn ipv4_frame(dst: [u8; 4], tail: &[u8]) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 0x02, 0x02, 0x68, 0x75, 0x6c, 0x6c, 0x01, 0x08, 0x00];
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&[10, 0, 2, 15]);
    ip[16..].copy_from_slice(&dst);
    f.extend_from_slice(&ip);
    f.extend_from_slice(tail);
    f
}

fn egress() -> EgressFilter {
    EgressFilter::new(EgressPolicy::default())
}

fn frame_bytes(frame: &[u8]) -> Vec<u8> {
    let mut v = (frame.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(frame);
    v
}

#[test]
fn a_tx_chain_becomes_one_length_prefixed_frame() {
    let mem = test_mem();
    mem.write_slice(&[0xAA; NET_HDR_LEN], GuestAddress(0x10_0000)).unwrap();
    let frame = ipv4_frame([1, 1, 1, 1], b"payload");
    mem.write_slice(&frame, GuestAddress(0x20_0000)).unwrap();
    let mut q = queue_with(
        &mem,
        16,
        &[
            desc(0x10_0000, NET_HDR_LEN as u32, F_NEXT, 1),
            desc(0x20_0000, frame.len() as u32, 0, 0),
        ],
    );
    let (mut out, mut scratch) = (FrameWriter::default(), vec![0u8; MAX_FRAME_LEN]);
    assert_eq!(
        process_tx(&mem, &mut q, &mut out, &mut scratch, &mut egress()).unwrap(),
        1
    );
    assert_eq!(out.queued(), frame_bytes(&frame));
    assert_eq!(used_elem(&mem, &q, 0), (0, 0));
}

#[test]
fn denied_frames_are_completed_unsent_and_counted() {
    let mem = test_mem();
    let frames = [
        ipv4_frame([127, 0, 0, 1], b"redis"),
        ipv4_frame([169, 254, 169, 254], b"metadata"),
        ipv4_frame([10, 0, 2, 2], b"gateway"),
        ipv4_frame([1, 1, 1, 1], b"world"),
    ];
    let mut raw = Vec::new();
    for (i, frame) in frames.iter().enumerate() {
        let addr = 0x10_0000 + 0x1_0000 * i as u64;
        mem.write_slice(&[0u8; NET_HDR_LEN], GuestAddress(addr)).unwrap();
        mem.write_slice(frame, GuestAddress(addr + NET_HDR_LEN as u64)).unwrap();
        raw.push(desc(addr, (NET_HDR_LEN + frame.len()) as u32, 0, 0));
    }
    let mut q = queue_with(&mem, 16, &raw);
    let (mut out, mut scratch, mut filter) = (FrameWriter::default(), vec![0u8; MAX_FRAME_LEN], egress());
    assert_eq!(
        process_tx(&mem, &mut q, &mut out, &mut scratch, &mut filter).unwrap(),
        4
    );
    assert_eq!(out.queued(), frame_bytes(&frames[3]), "only the frame to the world");
    assert_eq!(used_idx(&mem, &q), 4);
    assert_eq!(filter.dropped(), 3);
}

#[test]
fn bad_tx_chains_are_returned_unsent() {
    let mem = test_mem();
    for chain in [
        // A device-writable buffer in a TX chain.
        vec![desc(0x10_0000, 64, F_WRITE, 0)],
        // Shorter than the header.
        vec![desc(0x10_0000, 4, 0, 0)],
        // Larger than any frame (len = 0xffffffff would also straddle RAM).
        vec![desc(0x10_0000, NET_HDR_LEN as u32 + MAX_FRAME_LEN as u32 + 1, 0, 0)],
        vec![desc(0x10_0000, u32::MAX, 0, 0)],
        // A descriptor cycle.
        vec![desc(0x10_0000, 16, F_NEXT, 1), desc(0x20_0000, 16, F_NEXT, 0)],
    ] {
        let mut q = queue_with(&mem, 16, &chain);
        let (mut out, mut scratch) = (FrameWriter::default(), vec![0u8; MAX_FRAME_LEN]);
        assert_eq!(
            process_tx(&mem, &mut q, &mut out, &mut scratch, &mut egress()).unwrap(),
            1,
            "{chain:?}"
        );
        assert_eq!(out.pending(), 0);
        assert_eq!(used_idx(&mem, &q), 1);
    }
}

#[test]
fn a_backend_frame_fills_an_rx_chain_behind_the_header() {
    let mem = test_mem();
    let mut q = queue_with(&mem, 16, &[desc(0x10_0000, 2048, F_WRITE, 0)]);
    let mut inbound = FrameReader::default();
    inbound.push(&frame_bytes(b"hello"));
    assert_eq!(fill_rx(&mem, &mut q, &mut inbound).unwrap(), 1);
    let mut got = [0u8; NET_HDR_LEN + 5];
    mem.read_slice(&mut got, GuestAddress(0x10_0000)).unwrap();
    assert_eq!(&got[..10], &[0; 10]);
    assert_eq!(u16::from_le_bytes([got[10], got[11]]), 1, "num_buffers");
    assert_eq!(&got[NET_HDR_LEN..], b"hello");
    assert_eq!(used_elem(&mem, &q, 0), (0, (NET_HDR_LEN + 5) as u32));
    assert!(inbound.peek().unwrap().is_none());
}

#[test]
fn a_frame_too_big_for_the_rx_buffer_is_dropped_and_the_buffer_kept() {
    let mem = test_mem();
    let mut q = queue_with(&mem, 16, &[desc(0x10_0000, 20, F_WRITE, 0)]);
    let mut inbound = FrameReader::default();
    inbound.push(&frame_bytes(&[7u8; 100]));
    inbound.push(&frame_bytes(b"small"));
    assert_eq!(fill_rx(&mem, &mut q, &mut inbound).unwrap(), 1);
    // The big frame went; the small one used the same buffer.
    assert_eq!(used_idx(&mem, &q), 1);
    assert_eq!(used_elem(&mem, &q, 0), (0, (NET_HDR_LEN + 5) as u32));
    assert!(inbound.peek().unwrap().is_none());
}

#[test]
fn a_read_only_rx_buffer_is_returned_empty_and_the_frame_waits() {
    let mem = test_mem();
    let mut q = queue_with(&mem, 16, &[desc(0x10_0000, 2048, 0, 0)]);
    let mut inbound = FrameReader::default();
    inbound.push(&frame_bytes(b"kept"));
    assert_eq!(fill_rx(&mem, &mut q, &mut inbound).unwrap(), 1);
    assert_eq!(used_elem(&mem, &q, 0), (0, 0));
    assert_eq!(inbound.peek().unwrap(), Some(&b"kept"[..]));
}

#[test]
fn without_rx_buffers_frames_stay_buffered() {
    let mem = test_mem();
    let mut q = queue_with(&mem, 16, &[]);
    let mut inbound = FrameReader::default();
    inbound.push(&frame_bytes(b"wait"));
    assert_eq!(fill_rx(&mem, &mut q, &mut inbound).unwrap(), 0);
    assert_eq!(inbound.peek().unwrap(), Some(&b"wait"[..]));
}

#[test]
fn an_oversized_backend_frame_is_a_backend_error() {
    let mem = test_mem();
    let mut q = queue_with(&mem, 16, &[desc(0x10_0000, 2048, F_WRITE, 0)]);
    let mut inbound = FrameReader::default();
    inbound.push(&((MAX_FRAME_LEN + 1) as u32).to_be_bytes());
    assert!(matches!(
        fill_rx(&mem, &mut q, &mut inbound),
        Err(PumpError::Backend(_))
    ));
}

proptest! {
    #[test]
    fn tx_frames_survive_any_split_into_descriptors(
        tail in proptest::collection::vec(any::<u8>(), 0..3000),
        cuts in proptest::collection::vec(1u32..700, 1..8),
    ) {
        let mem = test_mem();
        let frame = ipv4_frame([1, 1, 1, 1], &tail);
        let mut wire = vec![0u8; NET_HDR_LEN];
        wire.extend_from_slice(&frame);
        let mut descs = Vec::new();
        let mut at = 0usize;
        let mut addr = 0x10_0000u64;
        for (i, cut) in cuts.iter().enumerate() {
            if at >= wire.len() {
                break;
            }
            let len = if i + 1 == cuts.len() { wire.len() - at } else { (*cut as usize).min(wire.len() - at) };
            mem.write_slice(&wire[at..at + len], GuestAddress(addr)).unwrap();
            descs.push((addr, len as u32));
            at += len;
            addr += 0x1_0000;
        }
        if at < wire.len() {
            mem.write_slice(&wire[at..], GuestAddress(addr)).unwrap();
            descs.push((addr, (wire.len() - at) as u32));
        }
        let n = descs.len();
        let raw: Vec<_> = descs
            .iter()
            .enumerate()
            .map(|(i, (a, l))| desc(*a, *l, if i + 1 < n { F_NEXT } else { 0 }, (i + 1) as u16))
            .collect();
        let mut q = queue_with(&mem, 16, &raw);
        let (mut out, mut scratch) = (FrameWriter::default(), vec![0u8; MAX_FRAME_LEN]);
        prop_assert_eq!(process_tx(&mem, &mut q, &mut out, &mut scratch, &mut egress()).unwrap(), 1);
        prop_assert_eq!(out.queued(), frame_bytes(&frame));
    }
}
