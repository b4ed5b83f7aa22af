//! The virtio-mmio register file in front of each device (block, vsock, net, fs,
//! rng, balloon), with a real event loop running the workers it activates: arbitrary register
//! reads and writes, whole bring-ups (status, features, queues on the fuzzed guest
//! memory, DRIVER_OK) and notifications, in any order. Must never panic or hang;
//! DRIVER_OK implies an active device; the magic value never changes; the read-only
//! disk stays unchanged. The fs backend is a fake vhost-user server on a thread.
#![no_main]

#[allow(dead_code)] // the queues are the driver's here, not common::queue's
mod common;

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;

use libfuzzer_sys::fuzz_target;
use vm_memory::{Bytes, GuestAddress};
use vmm::bus::BusDevice;
use vmm::devices::virtio::balloon::Balloon;
use vmm::devices::virtio::block::{Block, Disk};
use vmm::devices::virtio::fs::Fs;
use vmm::devices::virtio::mmio::{reg, status};
use vmm::devices::virtio::net::filter::EgressPolicy;
use vmm::devices::virtio::net::Net;
use vmm::devices::virtio::rng::Rng;
use vmm::devices::virtio::vsock::muxer::port_path;
use vmm::devices::virtio::vsock::Vsock;
use vmm::devices::virtio::{Interrupt, MmioTransport, VirtioDevice};
use vmm::devices::IrqLine;
use vmm::event_loop::EventLoop;
use vmm::memory::{create_guest_memory, Backing};

const DISK: [u8; 8192] = [0x5a; 8192];
const GET_FEATURES: u32 = 1;
const GET_VRING_BASE: u32 = 11;
const GET_PROTOCOL_FEATURES: u32 = 15;
const NEED_REPLY: u32 = 0x8;
/// VIRTIO_F_VERSION_1, INDIRECT_DESC and EVENT_IDX.
const FS_FEATURES: u64 = (1 << 32) | (1 << 28) | (1 << 29);

/// A vhost-user backend that answers what the frontend waits for and drops the rest.
fn fake_backend(listener: UnixListener, features: u64) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let Ok((mut s, _)) = listener.accept() else { return };
        let mut header = [0u8; 12];
        while s.read_exact(&mut header).is_ok() {
            let word = |i: usize| u32::from_le_bytes(header[i..i + 4].try_into().unwrap());
            let (request, flags, size) = (word(0), word(4), word(8));
            let mut body = vec![0u8; size.min(1 << 16) as usize];
            if s.read_exact(&mut body).is_err() {
                return;
            }
            let reply = match request {
                GET_FEATURES => features.to_le_bytes().to_vec(),
                GET_PROTOCOL_FEATURES => 0u64.to_le_bytes().to_vec(),
                GET_VRING_BASE => [body.get(..4).unwrap_or(&[0; 4]), &[0; 4]].concat(),
                _ if flags & NEED_REPLY != 0 => 0u64.to_le_bytes().to_vec(),
                _ => continue,
            };
            let mut msg = Vec::new();
            for w in [request, 0x1 | 0x4, reply.len() as u32] {
                msg.extend_from_slice(&w.to_le_bytes());
            }
            msg.extend_from_slice(&reply);
            if s.write_all(&msg).is_err() {
                return;
            }
        }
    })
}

/// What the device kind needs kept alive beside it.
#[derive(Default)]
struct Keep {
    disk: Option<tempfile::NamedTempFile>,
    _peer: Option<UnixStream>,
    _listener: Option<UnixListener>,
    backend: Option<JoinHandle<()>>,
}

fn device(kind: u8, dir: &Path, keep: &mut Keep) -> Box<dyn VirtioDevice> {
    match kind % 6 {
        0 => Box::new(Rng::new()),
        5 => Box::new(Balloon::new(Backing::Private)),
        1 => {
            let mut file = tempfile::NamedTempFile::new_in(dir).unwrap();
            file.write_all(&DISK).unwrap();
            let disk = Disk::open(file.path(), true, "fuzz").unwrap();
            keep.disk = Some(file);
            Box::new(Block::new(disk))
        }
        2 => {
            let uds = dir.join("v.sock");
            keep._listener = Some(UnixListener::bind(port_path(&uds, 1)).unwrap());
            Box::new(Vsock::new(3, &uds).unwrap())
        }
        3 => {
            let (ours, peer) = UnixStream::pair().unwrap();
            ours.set_nonblocking(true).unwrap();
            keep._peer = Some(peer);
            Box::new(Net::with_backend(ours, [2, 0, 0, 0, 0, 1], EgressPolicy::default()))
        }
        _ => {
            let socket = dir.join("fs.sock");
            let listener = UnixListener::bind(&socket).unwrap();
            let features = FS_FEATURES | if kind & 0x80 != 0 { 1 << 30 } else { 0 };
            keep.backend = Some(fake_backend(listener, features));
            Box::new(Fs::connect("fuzz", &socket).unwrap())
        }
    }
}

fn write32(t: &mut MmioTransport, offset: u64, value: u32) {
    t.write(offset, &value.to_le_bytes());
}

fn read32(t: &mut MmioTransport, offset: u64) -> u32 {
    let mut buf = [0u8; 4];
    t.read(offset, &mut buf);
    u32::from_le_bytes(buf)
}

/// What a well-behaved driver does, with the queue size and ring base from the input.
fn bring_up(t: &mut MmioTransport, size: u16, base: u64) {
    write32(t, reg::STATUS, 0);
    write32(t, reg::STATUS, status::ACKNOWLEDGE);
    write32(t, reg::STATUS, status::ACKNOWLEDGE | status::DRIVER);
    for sel in 0..2 {
        write32(t, reg::DEVICE_FEATURES_SEL, sel);
        let features = read32(t, reg::DEVICE_FEATURES);
        write32(t, reg::DRIVER_FEATURES_SEL, sel);
        write32(t, reg::DRIVER_FEATURES, features);
    }
    let s = status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK;
    write32(t, reg::STATUS, s);
    for q in 0..8u32 {
        write32(t, reg::QUEUE_SEL, q);
        if read32(t, reg::QUEUE_NUM_MAX) == 0 {
            break;
        }
        let ring = base + 0x1000 * u64::from(q);
        write32(t, reg::QUEUE_NUM, u32::from(size));
        for (low, addr) in [
            (reg::QUEUE_DESC_LOW, ring),
            (reg::QUEUE_AVAIL_LOW, ring + 0x100),
            (reg::QUEUE_USED_LOW, ring + 0x200),
        ] {
            write32(t, low, addr as u32);
            write32(t, low + 4, (addr >> 32) as u32);
        }
        write32(t, reg::QUEUE_READY, 1);
    }
    write32(t, reg::STATUS, s | status::DRIVER_OK);
}

fuzz_target!(|data: &[u8]| {
    let Some((&kind, ops)) = data.split_first() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut keep = Keep::default();
    let device = device(kind, dir.path(), &mut keep);
    let mem = if kind % 6 == 4 {
        // The backend maps guest memory, so virtio-fs needs it shareable.
        let mem = create_guest_memory(32 << 20, Backing::Shared).unwrap();
        mem.write_slice(&data[..data.len().min(common::MEM_SIZE)], GuestAddress(0))
            .unwrap();
        mem
    } else {
        common::memory(data)
    };
    let (mut event_loop, handle) = EventLoop::new().unwrap();
    let interrupt = Interrupt::new(IrqLine::new(5).unwrap());
    let mut t = MmioTransport::new(device, mem, interrupt, Arc::new(handle)).unwrap();
    for op in ops.chunks_exact(7).take(256) {
        let offset = u64::from(u16::from_le_bytes([op[1], op[2]]) & 0x1ff);
        let value = [op[3], op[4], op[5], op[6]];
        match op[0] & 3 {
            0 => {
                let len = 1 + (op[0] as usize >> 2) % 4;
                let mut buf = [0u8; 4];
                t.read(offset, &mut buf[..len]);
                if offset == reg::MAGIC_VALUE && len == 4 {
                    assert_eq!(buf, *b"virt");
                }
            }
            1 => {
                let len = 1 + (op[0] as usize >> 2) % 4;
                t.write(offset, &value[..len]);
            }
            2 => bring_up(
                &mut t,
                u16::from_le_bytes([op[3], op[4]]),
                u64::from(op[5] & 0x0f) << 12,
            ),
            _ => write32(&mut t, reg::QUEUE_NOTIFY, u32::from(op[3] % 4)),
        }
        // The device thread's turn: activations, notifications, stops.
        let _ = event_loop.run_once(0);
        assert!(t.status() & status::DRIVER_OK == 0 || t.is_active());
    }
    drop(t);
    let _ = event_loop.run_once(0);
    drop(event_loop);
    if let Some(backend) = keep.backend.take() {
        backend.join().unwrap();
    }
    if let Some(disk) = &keep.disk {
        assert_eq!(std::fs::read(disk.path()).unwrap(), DISK, "the read-only disk changed");
    }
});
