//! The virtio-mmio transport (version 2, virtio 1.x): the register file the guest
//! driver programs. It owns the queues until `DRIVER_OK`, then hands them to the
//! device's worker: those the accepted features use ([`VirtioDevice::queue_count`],
//! the first ones; Linux numbers the queues it sets up consecutively, skipping those
//! of declined features). Every register write the spec forbids in the current state
//! is ignored with a rate-limited warning.

use std::sync::Arc;

use virtio_queue::{Queue, QueueT};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::device::{ActivateContext, Interrupt, VirtioDevice};
use super::VIRTIO_F_VERSION_1;
use crate::bus::BusDevice;
use crate::event_loop::WorkerSpawner;
use crate::memory::GuestMemory;

const MAGIC: u32 = 0x7472_6976;
const VERSION: u32 = 2;
const VENDOR_ID: u32 = 0x4c4c_5548; // "HULL"

/// Device status bits (virtio spec 2.1).
pub mod status {
    /// The guest noticed the device.
    pub const ACKNOWLEDGE: u32 = 1;
    /// The guest has a driver for it.
    pub const DRIVER: u32 = 2;
    /// The driver is ready.
    pub const DRIVER_OK: u32 = 4;
    /// Feature negotiation is complete.
    pub const FEATURES_OK: u32 = 8;
    /// The device failed and needs a reset.
    pub const DEVICE_NEEDS_RESET: u32 = 0x40;
    /// The driver gave up.
    pub const FAILED: u32 = 0x80;
}
use status::*;

/// Register offsets (virtio spec 4.2.2).
pub mod reg {
    #![allow(missing_docs)]
    pub const MAGIC_VALUE: u64 = 0x000;
    pub const VERSION: u64 = 0x004;
    pub const DEVICE_ID: u64 = 0x008;
    pub const VENDOR_ID: u64 = 0x00c;
    pub const DEVICE_FEATURES: u64 = 0x010;
    pub const DEVICE_FEATURES_SEL: u64 = 0x014;
    pub const DRIVER_FEATURES: u64 = 0x020;
    pub const DRIVER_FEATURES_SEL: u64 = 0x024;
    pub const QUEUE_SEL: u64 = 0x030;
    pub const QUEUE_NUM_MAX: u64 = 0x034;
    pub const QUEUE_NUM: u64 = 0x038;
    pub const QUEUE_READY: u64 = 0x044;
    pub const QUEUE_NOTIFY: u64 = 0x050;
    pub const INTERRUPT_STATUS: u64 = 0x060;
    pub const INTERRUPT_ACK: u64 = 0x064;
    pub const STATUS: u64 = 0x070;
    pub const QUEUE_DESC_LOW: u64 = 0x080;
    pub const QUEUE_DESC_HIGH: u64 = 0x084;
    pub const QUEUE_AVAIL_LOW: u64 = 0x090;
    pub const QUEUE_AVAIL_HIGH: u64 = 0x094;
    pub const QUEUE_USED_LOW: u64 = 0x0a0;
    pub const QUEUE_USED_HIGH: u64 = 0x0a4;
    pub const CONFIG_GENERATION: u64 = 0x0fc;
    pub const CONFIG: u64 = 0x100;
}

/// One virtio device behind its MMIO register window.
pub struct MmioTransport {
    device: Box<dyn VirtioDevice>,
    mem: GuestMemory,
    spawner: Arc<dyn WorkerSpawner>,
    interrupt: Arc<Interrupt>,
    queues: Vec<Queue>,
    queue_evts: Vec<EventFd>,
    queue_select: u32,
    device_features_select: u32,
    driver_features_select: u32,
    driver_features: u64,
    status: u32,
    worker: Option<u32>,
}

impl MmioTransport {
    /// Puts `device` behind a transport; activation hands its worker to `spawner`.
    pub fn new(
        device: Box<dyn VirtioDevice>,
        mem: GuestMemory,
        interrupt: Arc<Interrupt>,
        spawner: Arc<dyn WorkerSpawner>,
    ) -> std::io::Result<Self> {
        let mut queues = Vec::new();
        let mut queue_evts = Vec::new();
        for &max in device.queue_max_sizes() {
            queues.push(Queue::new(max).map_err(|e| std::io::Error::other(format!("queue size {max}: {e:?}")))?);
            queue_evts.push(EventFd::new(EFD_NONBLOCK)?);
        }
        Ok(MmioTransport {
            device,
            mem,
            spawner,
            interrupt,
            queues,
            queue_evts,
            queue_select: 0,
            device_features_select: 0,
            driver_features_select: 0,
            driver_features: 0,
            status: 0,
            worker: None,
        })
    }

    /// The device status as the driver reads it.
    pub fn status(&self) -> u32 {
        self.status
            | if self.interrupt.is_broken() {
                DEVICE_NEEDS_RESET
            } else {
                0
            }
    }

    /// Whether the device's worker is running.
    pub fn is_active(&self) -> bool {
        self.worker.is_some()
    }

    fn selected_queue(&mut self) -> Option<&mut Queue> {
        self.queues.get_mut(self.queue_select as usize)
    }

    /// The queues the driver uses with the features it accepted: the first ones.
    fn queues_in_use(&self) -> usize {
        self.device.queue_count(self.driver_features).min(self.queues.len())
    }

    fn read_register(&mut self, offset: u64) -> u32 {
        match offset {
            reg::MAGIC_VALUE => MAGIC,
            reg::VERSION => VERSION,
            reg::DEVICE_ID => self.device.device_type(),
            reg::VENDOR_ID => VENDOR_ID,
            reg::DEVICE_FEATURES => match self.device_features_select {
                0 => self.device.features() as u32,
                1 => (self.device.features() >> 32) as u32,
                _ => 0,
            },
            reg::QUEUE_NUM_MAX => self.selected_queue().map_or(0, |q| u32::from(q.max_size())),
            reg::QUEUE_READY => self.selected_queue().map_or(0, |q| u32::from(q.ready())),
            reg::INTERRUPT_STATUS => self.interrupt.status(),
            reg::STATUS => self.status(),
            reg::CONFIG_GENERATION => 0,
            _ => {
                crate::warn_limited!("virtio-mmio: read of unknown register {offset:#x}");
                0
            }
        }
    }

    fn write_register(&mut self, offset: u64, value: u32) {
        match offset {
            reg::DEVICE_FEATURES_SEL => self.device_features_select = value,
            reg::DRIVER_FEATURES_SEL => self.driver_features_select = value,
            reg::DRIVER_FEATURES => self.write_driver_features(value),
            reg::QUEUE_SEL => self.queue_select = value,
            reg::QUEUE_NOTIFY => self.notify(value),
            reg::INTERRUPT_ACK => self.interrupt.ack(value),
            reg::STATUS => self.write_status(value),
            reg::QUEUE_NUM
            | reg::QUEUE_READY
            | reg::QUEUE_DESC_LOW
            | reg::QUEUE_DESC_HIGH
            | reg::QUEUE_AVAIL_LOW
            | reg::QUEUE_AVAIL_HIGH
            | reg::QUEUE_USED_LOW
            | reg::QUEUE_USED_HIGH => self.write_queue_register(offset, value),
            _ => crate::warn_limited!("virtio-mmio: write of unknown or read-only register {offset:#x}"),
        }
    }

    fn write_driver_features(&mut self, value: u32) {
        if self.status != ACKNOWLEDGE | DRIVER {
            crate::warn_limited!(
                "virtio-mmio: driver features written in status {:#x}; ignored",
                self.status
            );
            return;
        }
        match self.driver_features_select {
            0 => self.driver_features = (self.driver_features & !0xffff_ffff) | u64::from(value),
            1 => self.driver_features = (self.driver_features & 0xffff_ffff) | (u64::from(value) << 32),
            _ => crate::warn_limited!(
                "virtio-mmio: driver features select {} out of range",
                self.driver_features_select
            ),
        }
    }

    fn write_queue_register(&mut self, offset: u64, value: u32) {
        if self.status != ACKNOWLEDGE | DRIVER | FEATURES_OK {
            crate::warn_limited!(
                "virtio-mmio: queue register {offset:#x} written in status {:#x}; ignored",
                self.status
            );
            return;
        }
        let Some(q) = self.selected_queue() else {
            crate::warn_limited!("virtio-mmio: queue register written for a queue that does not exist");
            return;
        };
        match offset {
            reg::QUEUE_NUM => q.set_size(value.min(u32::from(u16::MAX)) as u16),
            reg::QUEUE_READY => q.set_ready(value == 1),
            reg::QUEUE_DESC_LOW => q.set_desc_table_address(Some(value), None),
            reg::QUEUE_DESC_HIGH => q.set_desc_table_address(None, Some(value)),
            reg::QUEUE_AVAIL_LOW => q.set_avail_ring_address(Some(value), None),
            reg::QUEUE_AVAIL_HIGH => q.set_avail_ring_address(None, Some(value)),
            reg::QUEUE_USED_LOW => q.set_used_ring_address(Some(value), None),
            _ => q.set_used_ring_address(None, Some(value)),
        }
    }

    fn notify(&mut self, queue: u32) {
        let in_use = self.queues_in_use();
        match self.queue_evts[..in_use].get(queue as usize) {
            Some(evt) if self.worker.is_some() => {
                if let Err(e) = evt.write(1) {
                    crate::warn_limited!("virtio-mmio: cannot signal queue {queue}: {e}");
                }
            }
            _ => crate::warn_limited!("virtio-mmio: notify of queue {queue} on an inactive device or missing queue"),
        }
    }

    fn write_status(&mut self, value: u32) {
        if value == 0 {
            self.reset();
            return;
        }
        if value & FAILED != 0 {
            self.status |= FAILED;
            return;
        }
        let ok = match (self.status, value) {
            (0, ACKNOWLEDGE) => true,
            (ACKNOWLEDGE, v) if v == ACKNOWLEDGE | DRIVER => true,
            (s, v) if s == ACKNOWLEDGE | DRIVER && v == s | FEATURES_OK => self.features_acceptable(),
            (s, v) if s == ACKNOWLEDGE | DRIVER | FEATURES_OK && v == s | DRIVER_OK => self.activate(),
            _ => false,
        };
        if ok {
            self.status = value;
        } else {
            crate::warn_limited!(
                "virtio-mmio: status transition {:#x} -> {value:#x} refused",
                self.status
            );
        }
    }

    fn features_acceptable(&self) -> bool {
        let offered = self.device.features();
        let unknown = self.driver_features & !offered;
        if unknown != 0 || self.driver_features & VIRTIO_F_VERSION_1 == 0 {
            crate::warn_limited!(
                "virtio-mmio: driver features {:#x} refused (offered {offered:#x})",
                self.driver_features
            );
            return false;
        }
        true
    }

    fn activate(&mut self) -> bool {
        let in_use = self.queues_in_use();
        if let Some(i) = self.queues[..in_use]
            .iter()
            .position(|q| !q.ready() || !q.is_valid(&self.mem))
        {
            crate::warn_limited!("virtio-mmio: queue {i} not ready or invalid at DRIVER_OK; device failed");
            self.interrupt.mark_broken();
            return false;
        }
        match self.try_activate() {
            Ok(id) => {
                self.worker = Some(id);
                true
            }
            Err(e) => {
                crate::warn_limited!("virtio-mmio: activation failed: {e}");
                self.interrupt.mark_broken();
                false
            }
        }
    }

    /// Hands the queues in use (not those of features the driver declined) to the
    /// device.
    fn try_activate(&mut self) -> Result<u32, Box<dyn std::error::Error>> {
        let in_use = self.queues_in_use();
        let mut queue_evts = Vec::with_capacity(in_use);
        let mut queues = Vec::with_capacity(in_use);
        for (evt, queue) in self.queue_evts.iter().zip(&self.queues).take(in_use) {
            queue_evts.push(evt.try_clone()?);
            queues.push(Queue::try_from(queue.state()).map_err(|e| format!("queue state: {e:?}"))?);
        }
        let ctx = ActivateContext {
            mem: self.mem.clone(),
            queues,
            queue_evts,
            interrupt: self.interrupt.clone(),
            driver_features: self.driver_features,
        };
        let worker = self.device.activate(ctx)?;
        Ok(self.spawner.spawn(worker)?)
    }

    fn reset(&mut self) {
        if let Some(id) = self.worker.take() {
            self.spawner.stop(id);
        }
        for q in &mut self.queues {
            q.reset();
        }
        self.status = 0;
        self.driver_features = 0;
        self.queue_select = 0;
        self.interrupt.reset();
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let config = self.device.config_space();
        let start = offset as usize;
        match start
            .checked_add(data.len())
            .filter(|&end| offset < config.len() as u64 && end <= config.len())
        {
            Some(end) => data.copy_from_slice(&config[start..end]),
            None => crate::warn_limited!("virtio-mmio: config read at {offset:#x}+{} out of range", data.len()),
        }
    }
}

impl BusDevice for MmioTransport {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if offset >= reg::CONFIG {
            self.read_config(offset - reg::CONFIG, data);
        } else if data.len() == 4 {
            data.copy_from_slice(&self.read_register(offset).to_le_bytes());
        } else {
            crate::warn_limited!("virtio-mmio: {}-byte register read at {offset:#x}", data.len());
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset >= reg::CONFIG {
            self.device.write_config(offset - reg::CONFIG, data);
        } else if let Ok(bytes) = <[u8; 4]>::try_from(data) {
            self.write_register(offset, u32::from_le_bytes(bytes));
        } else {
            crate::warn_limited!("virtio-mmio: {}-byte register write at {offset:#x}", data.len());
        }
    }
}

#[cfg(test)]
mod tests;
