use std::sync::Mutex;

use proptest::prelude::*;
use vm_memory::GuestAddress;

use super::*;
use crate::devices::virtio::ActivateError;
use crate::devices::IrqLine;
use crate::event_loop::{EventOps, EventSubscriber};
use vmm_sys_util::epoll::EventSet;

struct NullWorker;

impl EventSubscriber for NullWorker {
    fn init(&mut self, _ops: &mut EventOps) {}
    fn process(&mut self, _token: u32, _events: EventSet, _ops: &mut EventOps) {}
}

struct TestDevice {
    activations: Arc<Mutex<Vec<usize>>>,
}

impl VirtioDevice for TestDevice {
    fn device_type(&self) -> u32 {
        42
    }
    fn features(&self) -> u64 {
        VIRTIO_F_VERSION_1 | 0b101
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &[16, 8]
    }
    fn config_space(&self) -> &[u8] {
        &[1, 2, 3, 4, 5, 6, 7, 8]
    }
    fn activate(&mut self, ctx: ActivateContext) -> Result<Box<dyn EventSubscriber>, ActivateError> {
        self.activations.lock().unwrap().push(ctx.queues.len());
        Ok(Box::new(NullWorker))
    }
}

#[derive(Default)]
struct Spawns {
    spawned: Mutex<u32>,
    stopped: Mutex<Vec<u32>>,
}

impl WorkerSpawner for Spawns {
    fn spawn(&self, _worker: Box<dyn EventSubscriber>) -> std::io::Result<u32> {
        let mut n = self.spawned.lock().unwrap();
        *n += 1;
        Ok(*n)
    }
    fn stop(&self, id: u32) {
        self.stopped.lock().unwrap().push(id);
    }
}

struct Fixture {
    t: MmioTransport,
    spawns: Arc<Spawns>,
    activations: Arc<Mutex<Vec<usize>>>,
}

fn fixture() -> Fixture {
    let mem = GuestMemory::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap();
    let activations = Arc::new(Mutex::new(Vec::new()));
    let spawns = Arc::new(Spawns::default());
    let device = Box::new(TestDevice {
        activations: activations.clone(),
    });
    let interrupt = Interrupt::new(IrqLine::new(5).unwrap());
    let t = MmioTransport::new(device, mem, interrupt, spawns.clone()).unwrap();
    Fixture { t, spawns, activations }
}

fn w(t: &mut MmioTransport, offset: u64, value: u32) {
    t.write(offset, &value.to_le_bytes());
}

fn r(t: &mut MmioTransport, offset: u64) -> u32 {
    let mut data = [0u8; 4];
    t.read(offset, &mut data);
    u32::from_le_bytes(data)
}

fn negotiate(t: &mut MmioTransport) {
    w(t, reg::STATUS, ACKNOWLEDGE);
    w(t, reg::STATUS, ACKNOWLEDGE | DRIVER);
    w(t, reg::DRIVER_FEATURES_SEL, 1);
    w(t, reg::DRIVER_FEATURES, 1);
    w(t, reg::DRIVER_FEATURES_SEL, 0);
    w(t, reg::DRIVER_FEATURES, 0b100);
    w(t, reg::STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK);
}

fn setup_queue(t: &mut MmioTransport, index: u32, size: u32, base: u32) {
    w(t, reg::QUEUE_SEL, index);
    w(t, reg::QUEUE_NUM, size);
    w(t, reg::QUEUE_DESC_LOW, base);
    w(t, reg::QUEUE_AVAIL_LOW, base + 0x1000);
    w(t, reg::QUEUE_USED_LOW, base + 0x2000);
    w(t, reg::QUEUE_READY, 1);
}

fn bring_up(t: &mut MmioTransport) {
    negotiate(t);
    setup_queue(t, 0, 16, 0x1_0000);
    setup_queue(t, 1, 8, 0x2_0000);
    w(t, reg::STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK);
}

#[test]
fn mmio_identity_registers_read_back() {
    let mut f = fixture();
    assert_eq!(r(&mut f.t, reg::MAGIC_VALUE), MAGIC);
    assert_eq!(r(&mut f.t, reg::VERSION), 2);
    assert_eq!(r(&mut f.t, reg::DEVICE_ID), 42);
    w(&mut f.t, reg::DEVICE_FEATURES_SEL, 1);
    assert_eq!(r(&mut f.t, reg::DEVICE_FEATURES), 1);
    w(&mut f.t, reg::QUEUE_SEL, 1);
    assert_eq!(r(&mut f.t, reg::QUEUE_NUM_MAX), 8);
    w(&mut f.t, reg::QUEUE_SEL, 9);
    assert_eq!(r(&mut f.t, reg::QUEUE_NUM_MAX), 0);
}

#[test]
fn mmio_full_handshake_activates_the_device_once() {
    let mut f = fixture();
    bring_up(&mut f.t);
    assert!(f.t.is_active());
    assert_eq!(f.t.status(), ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK);
    assert_eq!(*f.activations.lock().unwrap(), vec![2]);
}

#[test]
fn mmio_queue_registers_written_after_driver_ok_are_ignored() {
    let mut f = fixture();
    bring_up(&mut f.t);
    w(&mut f.t, reg::QUEUE_SEL, 0);
    w(&mut f.t, reg::QUEUE_NUM, 2);
    w(&mut f.t, reg::QUEUE_DESC_LOW, 0xdead_0000);
    w(&mut f.t, reg::QUEUE_READY, 0);
    assert_eq!(f.t.queues[0].size(), 16);
    assert_eq!(f.t.queues[0].desc_table(), 0x1_0000);
    assert!(f.t.queues[0].ready());
}

#[test]
fn mmio_out_of_order_status_transitions_are_refused() {
    for (from, to) in [
        (0, DRIVER_OK),
        (0, ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK),
        (0, DRIVER),
        (ACKNOWLEDGE, ACKNOWLEDGE | FEATURES_OK),
        (ACKNOWLEDGE, ACKNOWLEDGE | DRIVER_OK),
    ] {
        let mut f = fixture();
        if from != 0 {
            w(&mut f.t, reg::STATUS, from);
        }
        w(&mut f.t, reg::STATUS, to);
        assert_eq!(f.t.status(), from, "{from:#x} -> {to:#x}");
        assert!(!f.t.is_active());
    }
}

#[test]
fn mmio_clearing_status_bits_without_reset_is_refused() {
    let mut f = fixture();
    negotiate(&mut f.t);
    w(&mut f.t, reg::STATUS, ACKNOWLEDGE);
    assert_eq!(f.t.status(), ACKNOWLEDGE | DRIVER | FEATURES_OK);
}

#[test]
fn mmio_features_not_offered_keep_features_ok_clear() {
    let mut f = fixture();
    w(&mut f.t, reg::STATUS, ACKNOWLEDGE);
    w(&mut f.t, reg::STATUS, ACKNOWLEDGE | DRIVER);
    w(&mut f.t, reg::DRIVER_FEATURES_SEL, 1);
    w(&mut f.t, reg::DRIVER_FEATURES, 1);
    w(&mut f.t, reg::DRIVER_FEATURES_SEL, 0);
    w(&mut f.t, reg::DRIVER_FEATURES, 0b10);
    w(&mut f.t, reg::STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK);
    assert_eq!(f.t.status() & FEATURES_OK, 0);
}

#[test]
fn mmio_legacy_driver_without_version_1_is_refused() {
    let mut f = fixture();
    w(&mut f.t, reg::STATUS, ACKNOWLEDGE);
    w(&mut f.t, reg::STATUS, ACKNOWLEDGE | DRIVER);
    w(&mut f.t, reg::STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK);
    assert_eq!(f.t.status() & FEATURES_OK, 0);
}

#[test]
fn mmio_invalid_queue_sizes_are_refused_keeping_a_valid_size() {
    for size in [0, 3, 32, 0xffff_ffff] {
        let mut f = fixture();
        negotiate(&mut f.t);
        setup_queue(&mut f.t, 0, 16, 0x1_0000);
        setup_queue(&mut f.t, 1, size, 0x2_0000);
        assert_eq!(f.t.queues[1].size(), 8, "size {size}");
        w(&mut f.t, reg::STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK);
        assert!(f.t.is_active());
    }
}

#[test]
fn mmio_rings_outside_guest_memory_fail_activation() {
    let mut f = fixture();
    negotiate(&mut f.t);
    setup_queue(&mut f.t, 0, 16, 0x1_0000);
    setup_queue(&mut f.t, 1, 8, 0xfff_0000);
    w(&mut f.t, reg::STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK);
    assert!(!f.t.is_active());
    assert_ne!(f.t.status() & DEVICE_NEEDS_RESET, 0);
    assert!(f.activations.lock().unwrap().is_empty());
}

#[test]
fn mmio_queue_not_ready_fails_activation() {
    let mut f = fixture();
    negotiate(&mut f.t);
    setup_queue(&mut f.t, 0, 16, 0x1_0000);
    w(&mut f.t, reg::STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK);
    assert!(!f.t.is_active());
}

#[test]
fn mmio_notify_signals_the_queue_only_when_active() {
    let mut f = fixture();
    w(&mut f.t, reg::QUEUE_NOTIFY, 0);
    assert!(f.t.queue_evts[0].read().is_err());
    bring_up(&mut f.t);
    w(&mut f.t, reg::QUEUE_NOTIFY, 1);
    w(&mut f.t, reg::QUEUE_NOTIFY, 7);
    assert_eq!(f.t.queue_evts[1].read().unwrap(), 1);
}

#[test]
fn mmio_reset_stops_the_worker_and_allows_a_new_handshake() {
    let mut f = fixture();
    bring_up(&mut f.t);
    w(&mut f.t, reg::STATUS, 0);
    assert_eq!(*f.spawns.stopped.lock().unwrap(), vec![1]);
    assert_eq!(f.t.status(), 0);
    bring_up(&mut f.t);
    assert!(f.t.is_active());
}

#[test]
fn mmio_config_reads_are_bounded() {
    let mut f = fixture();
    let mut data = [0u8; 4];
    f.t.read(reg::CONFIG + 4, &mut data);
    assert_eq!(data, [5, 6, 7, 8]);
    let mut data = [0xaau8; 4];
    f.t.read(reg::CONFIG + 6, &mut data);
    assert_eq!(data, [0, 0, 0, 0]);
    f.t.read(u64::MAX - 2, &mut data);
}

#[test]
fn mmio_interrupt_ack_clears_status_bits() {
    let mut f = fixture();
    f.t.interrupt.signal_used_queue();
    assert_eq!(r(&mut f.t, reg::INTERRUPT_STATUS), 1);
    w(&mut f.t, reg::INTERRUPT_ACK, 1);
    assert_eq!(r(&mut f.t, reg::INTERRUPT_STATUS), 0);
}

proptest! {
    #[test]
    fn mmio_random_register_traffic_never_panics(ops in proptest::collection::vec((0u64..0x200, any::<u32>(), any::<bool>(), 1usize..9), 0..200)) {
        let mut f = fixture();
        for (offset, value, is_write, len) in ops {
            if is_write {
                let bytes = value.to_le_bytes();
                f.t.write(offset, &bytes[..len.min(4)]);
            } else {
                let mut data = vec![0u8; len];
                f.t.read(offset, &mut data);
            }
        }
        let status = f.t.status();
        prop_assert!(status & DRIVER_OK == 0 || f.t.is_active());
    }
}
