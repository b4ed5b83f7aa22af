//! virtio-blk transport side: features, the configuration space (capacity) and
//! activation.

use vmm_sys_util::timerfd::TimerFd;

use super::disk::Disk;
use super::worker::BlockWorker;
use crate::devices::virtio::device::check_queue_count;
use crate::devices::virtio::{
    ActivateContext, ActivateError, VirtioDevice, MAX_QUEUE_SIZE, TYPE_BLOCK, VIRTIO_F_VERSION_1,
};
use crate::event_loop::EventSubscriber;

/// Feature: `seg_max` in config is valid.
pub const VIRTIO_BLK_F_SEG_MAX: u64 = 1 << 2;
/// Feature: the disk is read-only.
pub const VIRTIO_BLK_F_RO: u64 = 1 << 5;
/// Feature: FLUSH is supported.
pub const VIRTIO_BLK_F_FLUSH: u64 = 1 << 9;
const CONFIG_LEN: usize = 60;

/// A virtio block device.
pub struct Block {
    disk: Option<Disk>,
    /// Made with the device, before the VMM confines itself: the worker's timer for
    /// writes that wait for room on the host.
    retry: Option<TimerFd>,
    config: [u8; CONFIG_LEN],
    features: u64,
    queue_sizes: [u16; 1],
}

impl Block {
    /// A block device over `disk`.
    pub fn new(disk: Disk) -> Self {
        let mut config = [0u8; CONFIG_LEN];
        config[0..8].copy_from_slice(&disk.sectors().to_le_bytes());
        config[12..16].copy_from_slice(&u32::from(MAX_QUEUE_SIZE - 2).to_le_bytes());
        let mut features = VIRTIO_F_VERSION_1 | VIRTIO_BLK_F_FLUSH | VIRTIO_BLK_F_SEG_MAX;
        if disk.read_only() {
            features |= VIRTIO_BLK_F_RO;
        }
        let retry = match TimerFd::new() {
            Ok(timer) => Some(timer),
            Err(e) => {
                crate::warn_limited!(
                    "virtio-blk: {}: no retry timer ({e}); a full host disk is retried on the guest's next request",
                    disk.label()
                );
                None
            }
        };
        Block {
            disk: Some(disk),
            retry,
            config,
            features,
            queue_sizes: [MAX_QUEUE_SIZE],
        }
    }
}

impl VirtioDevice for Block {
    fn device_type(&self) -> u32 {
        TYPE_BLOCK
    }

    fn features(&self) -> u64 {
        self.features
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &self.queue_sizes
    }

    fn config_space(&self) -> &[u8] {
        &self.config
    }

    /// The disk moves into the worker; a reset device is not re-activated (Linux
    /// only resets at shutdown).
    fn activate(&mut self, mut ctx: ActivateContext) -> Result<Box<dyn EventSubscriber>, ActivateError> {
        check_queue_count(&ctx, 1)?;
        let disk = self.disk.take().ok_or(ActivateError::AlreadyActive)?;
        let (queue, evt) = (ctx.queues.remove(0), ctx.queue_evts.remove(0));
        Ok(Box::new(BlockWorker::new(
            disk,
            ctx.mem,
            queue,
            evt,
            ctx.interrupt,
            self.retry.take(),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_advertises_read_only_and_capacity() {
        let disk = Disk::from_file(tempfile::tempfile().unwrap(), 8192, true, "base");
        let blk = Block::new(disk);
        assert_ne!(blk.features() & VIRTIO_BLK_F_RO, 0);
        assert_eq!(&blk.config_space()[0..8], &16u64.to_le_bytes());
        let rw = Block::new(Disk::from_file(tempfile::tempfile().unwrap(), 4096, false, "upper"));
        assert_eq!(rw.features() & VIRTIO_BLK_F_RO, 0);
    }
}
