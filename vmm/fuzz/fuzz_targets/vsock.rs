//! virtio-vsock TX then RX processing over fuzzer-filled guest memory, with a host
//! listener on one port so connections can be established.
#![no_main]

mod common;

use std::os::unix::io::RawFd;
use std::os::unix::net::UnixListener;

use libfuzzer_sys::fuzz_target;
use vmm::devices::virtio::vsock::muxer::{port_path, Muxer, Registry};
use vmm::devices::virtio::vsock::worker::{fill_rx, process_tx};
use vmm::devices::virtio::vsock::MAX_PKT_PAYLOAD;
use vmm::event_loop::EventSet;

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

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    let uds = dir.path().join("v.sock");
    let _listener = UnixListener::bind(port_path(&uds, 1)).unwrap();
    let mut muxer = Muxer::new(3, &uds).unwrap();
    let mem = common::memory(data);
    let mut payload = vec![0u8; MAX_PKT_PAYLOAD];
    let (mut tx, mut rx) = (common::queue(0x1000), common::queue(0x2000));
    for _ in 0..4 {
        let _ = process_tx(&mem, &mut tx, &mut muxer, &mut payload, &mut NullRegistry);
        let _ = fill_rx(&mem, &mut rx, &mut muxer, &mut payload, &mut NullRegistry);
    }
});
