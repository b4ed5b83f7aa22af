//! virtio-net TX and RX processing over fuzzer-filled guest memory and queues, with
//! backend bytes (length-prefixed frames, possibly malformed) from the same input;
//! the TX frames pass the egress filter, and the input's start is also filtered
//! directly as a frame.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use vmm::devices::virtio::net::filter::{allowed, EgressFilter, EgressPolicy};
use vmm::devices::virtio::net::frames::{FrameReader, FrameWriter};
use vmm::devices::virtio::net::worker::{fill_rx, process_tx};
use vmm::devices::virtio::net::MAX_FRAME_LEN;

fuzz_target!(|data: &[u8]| {
    let frame = data.get(..data.len().min(256)).unwrap_or_default();
    let open = EgressPolicy {
        allow_gateway: data.first().is_some_and(|b| b & 1 == 1),
        published_tcp: vec![8080],
        ..EgressPolicy::default()
    };
    let _ = allowed(frame, &open);
    let mut egress = EgressFilter::new(open);
    let mem = common::memory(data);
    let mut scratch = vec![0u8; MAX_FRAME_LEN];
    let (mut tx, mut rx) = (common::queue(0x1000), common::queue(0x2000));
    let (mut out, mut inbound) = (FrameWriter::default(), FrameReader::default());
    inbound.push(data.get(..data.len().min(8192)).unwrap_or_default());
    for _ in 0..4 {
        let _ = process_tx(&mem, &mut tx, &mut out, &mut scratch, &mut egress);
        if fill_rx(&mem, &mut rx, &mut inbound).is_err() {
            break;
        }
    }
});
