//! What every virtio device provides to the transport, and what it gets on activation.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

use thiserror::Error;
use virtio_queue::Queue;
use vmm_sys_util::eventfd::EventFd;

use crate::devices::IrqLine;
use crate::event_loop::EventSubscriber;
use crate::memory::GuestMemory;

/// Interrupt status bit: a used ring was updated.
pub const INT_USED_RING: u32 = 0x1;
/// Interrupt status bit: the configuration (or device status) changed.
pub const INT_CONFIG: u32 = 0x2;

/// The device's interrupt, shared by the transport (status, ack) and the worker.
pub struct Interrupt {
    status: AtomicU32,
    broken: AtomicBool,
    line: IrqLine,
}

impl Interrupt {
    /// An interrupt raising `line`.
    pub fn new(line: IrqLine) -> Arc<Self> {
        Arc::new(Interrupt {
            status: AtomicU32::new(0),
            broken: AtomicBool::new(false),
            line,
        })
    }

    /// Tells the driver a used ring changed.
    pub fn signal_used_queue(&self) {
        self.signal(INT_USED_RING);
    }

    fn signal(&self, bit: u32) {
        self.status.fetch_or(bit, Ordering::SeqCst);
        if let Err(e) = self.line.raise() {
            crate::warn_limited!("virtio: cannot raise irq {}: {e}", self.line.gsi());
        }
    }

    /// Current interrupt status register value.
    pub fn status(&self) -> u32 {
        self.status.load(Ordering::SeqCst)
    }

    /// The driver acknowledged `bits`.
    pub fn ack(&self, bits: u32) {
        self.status.fetch_and(!bits, Ordering::SeqCst);
    }

    /// Marks the device broken (the driver sees DEVICE_NEEDS_RESET) and tells it.
    pub fn mark_broken(&self) {
        if !self.broken.swap(true, Ordering::SeqCst) {
            self.signal(INT_CONFIG);
        }
    }

    /// Whether the device was marked broken since the last reset.
    pub fn is_broken(&self) -> bool {
        self.broken.load(Ordering::SeqCst)
    }

    /// Clears status and the broken mark (device reset).
    pub fn reset(&self) {
        self.status.store(0, Ordering::SeqCst);
        self.broken.store(false, Ordering::SeqCst);
    }

    /// The interrupt line.
    pub fn line(&self) -> &IrqLine {
        &self.line
    }
}

/// Everything a device needs to start processing its queues.
pub struct ActivateContext {
    /// Guest memory.
    pub mem: GuestMemory,
    /// The queues, configured and validated by the transport.
    pub queues: Vec<Queue>,
    /// One eventfd per queue, written when the driver notifies that queue.
    pub queue_evts: Vec<EventFd>,
    /// The device's interrupt.
    pub interrupt: Arc<Interrupt>,
    /// The feature bits the driver accepted.
    pub driver_features: u64,
}

/// Errors activating a device.
#[derive(Debug, Error)]
pub enum ActivateError {
    /// the driver configured a different number of queues than the device has
    #[error("device expects {expected} queues, got {got}")]
    QueueCount {
        /// Queues the device has.
        expected: usize,
        /// Queues handed over.
        got: usize,
    },
    /// the device was already activated and cannot be again
    #[error("device already activated")]
    AlreadyActive,
    /// a host resource for the worker could not be set up
    #[error("cannot set up the device backend")]
    Backend(#[source] std::io::Error),
}

/// A virtio device's transport-facing side.
pub trait VirtioDevice: Send {
    /// virtio device type.
    fn device_type(&self) -> u32;
    /// Feature bits offered to the driver.
    fn features(&self) -> u64;
    /// Maximum size of each queue; the length is the number of queues.
    fn queue_max_sizes(&self) -> &[u16];
    /// The device configuration space as the driver reads it.
    fn config_space(&self) -> &[u8];
    /// The driver wrote `data` at `offset` into the configuration space. Only fields
    /// the spec makes driver-writable may change; by default every write is ignored.
    fn write_config(&mut self, offset: u64, data: &[u8]) {
        crate::warn_limited!(
            "virtio: config space write of {} bytes at {offset:#x} ignored",
            data.len()
        );
    }
    /// How many queues the driver uses with `driver_features`: the first ones, in
    /// order. All of them, unless a queue exists only with a feature (virtio-balloon's
    /// reporting queue).
    fn queue_count(&self, driver_features: u64) -> usize {
        let _ = driver_features;
        self.queue_max_sizes().len()
    }
    /// Starts the device: returns the worker that owns the queues from now on.
    fn activate(&mut self, ctx: ActivateContext) -> Result<Box<dyn EventSubscriber>, ActivateError>;
}

/// Checks the queue count handed to `activate`.
pub fn check_queue_count(ctx: &ActivateContext, expected: usize) -> Result<(), ActivateError> {
    if ctx.queues.len() != expected || ctx.queue_evts.len() != expected {
        return Err(ActivateError::QueueCount {
            expected,
            got: ctx.queues.len(),
        });
    }
    Ok(())
}
