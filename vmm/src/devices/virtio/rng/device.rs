//! virtio-rng transport side: one queue, no configuration.

use super::worker::RngWorker;
use crate::devices::virtio::device::check_queue_count;
use crate::devices::virtio::{
    ActivateContext, ActivateError, VirtioDevice, MAX_QUEUE_SIZE, TYPE_RNG, VIRTIO_F_VERSION_1,
};
use crate::event_loop::EventSubscriber;

/// The entropy device.
#[derive(Default)]
pub struct Rng {
    queue_sizes: [u16; 1],
}

impl Rng {
    /// A new entropy device.
    pub fn new() -> Self {
        Rng {
            queue_sizes: [MAX_QUEUE_SIZE],
        }
    }
}

impl VirtioDevice for Rng {
    fn device_type(&self) -> u32 {
        TYPE_RNG
    }

    fn features(&self) -> u64 {
        VIRTIO_F_VERSION_1
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &self.queue_sizes
    }

    fn config_space(&self) -> &[u8] {
        &[]
    }

    fn activate(&mut self, mut ctx: ActivateContext) -> Result<Box<dyn EventSubscriber>, ActivateError> {
        check_queue_count(&ctx, 1)?;
        let (queue, evt) = (ctx.queues.remove(0), ctx.queue_evts.remove(0));
        Ok(Box::new(RngWorker::new(ctx.mem, queue, evt, ctx.interrupt)))
    }
}
