//! The virtio-mmio register file driven by arbitrary reads and writes, in front of a
//! virtio-rng device: must never panic, and DRIVER_OK implies an active device.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use vm_memory::GuestAddress;
use vmm::bus::BusDevice;
use vmm::devices::virtio::rng::Rng;
use vmm::devices::virtio::{Interrupt, MmioTransport};
use vmm::devices::IrqLine;
use vmm::event_loop::{EventSubscriber, WorkerSpawner};
use vmm::memory::GuestMemory;

struct Discard;

impl WorkerSpawner for Discard {
    fn spawn(&self, _worker: Box<dyn EventSubscriber>) -> std::io::Result<u32> {
        Ok(1)
    }
    fn stop(&self, _id: u32) {}
}

fuzz_target!(|data: &[u8]| {
    let mem = GuestMemory::from_ranges(&[(GuestAddress(0), 0x1_0000)]).unwrap();
    let interrupt = Interrupt::new(IrqLine::new(5).unwrap());
    let mut t = MmioTransport::new(Box::new(Rng::new()), mem, interrupt, Arc::new(Discard)).unwrap();
    for op in data.chunks(7) {
        if op.len() < 7 {
            break;
        }
        let offset = u64::from(u16::from_le_bytes([op[1], op[2]]) & 0x1ff);
        let value = [op[3], op[4], op[5], op[6]];
        let len = 1 + (op[0] as usize >> 1) % 4;
        if op[0] & 1 == 0 {
            let mut buf = [0u8; 4];
            t.read(offset, &mut buf[..len]);
        } else {
            t.write(offset, &value[..len]);
        }
        assert!(t.status() & 4 == 0 || t.is_active());
    }
});
