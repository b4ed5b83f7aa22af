//! virtio-balloon transport side: features, the configuration space (the driver
//! writes `actual`), and two or three queues depending on `PAGE_REPORTING`.

use std::sync::Arc;

use super::release::Releaser;
use super::worker::{BalloonStats, BalloonWorker};
use crate::devices::virtio::device::check_queue_count;
use crate::devices::virtio::{
    ActivateContext, ActivateError, VirtioDevice, MAX_QUEUE_SIZE, TYPE_BALLOON, VIRTIO_F_VERSION_1,
};
use crate::event_loop::EventSubscriber;
use crate::memory::Backing;

/// Feature: the driver may take pages back from the balloon when the guest is out of
/// memory (harmless: the host never inflates it).
pub const VIRTIO_BALLOON_F_DEFLATE_ON_OOM: u64 = 1 << 2;
/// Feature: the driver reports free pages on the reporting queue.
pub const VIRTIO_BALLOON_F_PAGE_REPORTING: u64 = 1 << 5;

/// `struct virtio_balloon_config`: `num_pages`, `actual`, `free_page_hint_cmd_id`,
/// `poison_val`, each a little-endian u32.
pub const CONFIG_LEN: usize = 16;
/// Offset of `actual`, the only field the driver writes here (`poison_val` is
/// written only with `VIRTIO_BALLOON_F_PAGE_POISON`, not offered).
pub const CONFIG_ACTUAL: usize = 4;

/// The balloon device.
pub struct Balloon {
    config: [u8; CONFIG_LEN],
    queue_sizes: [u16; 3],
    backing: Backing,
    stats: Arc<BalloonStats>,
}

impl Balloon {
    /// A balloon over guest memory backed as `backing` (it decides how pages are
    /// released), with a target of 0 pages.
    pub fn new(backing: Backing) -> Self {
        Balloon {
            config: [0; CONFIG_LEN],
            queue_sizes: [MAX_QUEUE_SIZE; 3],
            backing,
            stats: Arc::default(),
        }
    }

    /// The device's counters, kept across resets.
    pub fn stats(&self) -> Arc<BalloonStats> {
        self.stats.clone()
    }

    /// The `actual` field: pages the driver says the balloon holds.
    pub fn actual(&self) -> u32 {
        let field = &self.config[CONFIG_ACTUAL..CONFIG_ACTUAL + 4];
        u32::from_le_bytes([field[0], field[1], field[2], field[3]])
    }
}

impl VirtioDevice for Balloon {
    fn device_type(&self) -> u32 {
        TYPE_BALLOON
    }

    fn features(&self) -> u64 {
        VIRTIO_F_VERSION_1 | VIRTIO_BALLOON_F_DEFLATE_ON_OOM | VIRTIO_BALLOON_F_PAGE_REPORTING
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &self.queue_sizes
    }

    fn config_space(&self) -> &[u8] {
        &self.config
    }

    /// Accepts writes inside `actual` only.
    fn write_config(&mut self, offset: u64, data: &[u8]) {
        let actual = CONFIG_ACTUAL as u64..CONFIG_ACTUAL as u64 + 4;
        match offset.checked_add(data.len() as u64) {
            Some(end) if actual.start <= offset && end <= actual.end => {
                let start = offset as usize;
                self.config[start..start + data.len()].copy_from_slice(data);
            }
            _ => crate::warn_limited!(
                "virtio-balloon: config write of {} bytes at {offset:#x} outside `actual` ignored",
                data.len()
            ),
        }
    }

    /// inflateq and deflateq, and reportingq when the driver accepted `PAGE_REPORTING`.
    fn queue_count(&self, driver_features: u64) -> usize {
        if driver_features & VIRTIO_BALLOON_F_PAGE_REPORTING != 0 {
            3
        } else {
            2
        }
    }

    fn activate(&mut self, ctx: ActivateContext) -> Result<Box<dyn EventSubscriber>, ActivateError> {
        check_queue_count(&ctx, self.queue_count(ctx.driver_features))?;
        let releaser = Releaser::new(self.backing);
        Ok(Box::new(BalloonWorker::new(ctx, releaser, self.stats.clone())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::virtio::chain::test_utils::test_mem;
    use crate::devices::virtio::Interrupt;
    use crate::devices::IrqLine;
    use virtio_queue::{Queue, QueueT};
    use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

    fn context(queues: usize, driver_features: u64) -> ActivateContext {
        ActivateContext {
            mem: test_mem(),
            queues: (0..queues).map(|_| Queue::new(MAX_QUEUE_SIZE).unwrap()).collect(),
            queue_evts: (0..queues).map(|_| EventFd::new(EFD_NONBLOCK).unwrap()).collect(),
            interrupt: Interrupt::new(IrqLine::new(5).unwrap()),
            driver_features,
        }
    }

    #[test]
    fn balloon_activates_with_two_queues_without_reporting_and_three_with() {
        let mut b = Balloon::new(Backing::Private);
        let reporting = VIRTIO_F_VERSION_1 | VIRTIO_BALLOON_F_PAGE_REPORTING;
        assert!(b.activate(context(2, VIRTIO_F_VERSION_1)).is_ok());
        assert!(
            b.activate(context(3, reporting)).is_ok(),
            "activates again after a reset"
        );
        for (queues, features) in [(3, VIRTIO_F_VERSION_1), (2, reporting), (1, VIRTIO_F_VERSION_1)] {
            assert!(
                matches!(
                    b.activate(context(queues, features)),
                    Err(ActivateError::QueueCount { .. })
                ),
                "{queues} queues with features {features:#x}"
            );
        }
    }

    #[test]
    fn balloon_offers_reporting_and_a_target_of_zero_pages() {
        let b = Balloon::new(Backing::Shared);
        assert_eq!(TYPE_BALLOON, 5);
        assert_ne!(b.features() & VIRTIO_BALLOON_F_PAGE_REPORTING, 0);
        assert_ne!(b.features() & VIRTIO_F_VERSION_1, 0);
        assert_eq!(b.config_space(), &[0; CONFIG_LEN]);
        assert_eq!(b.queue_count(0), 2);
        assert_eq!(b.queue_count(VIRTIO_BALLOON_F_PAGE_REPORTING), 3);
    }

    #[test]
    fn balloon_accepts_config_writes_to_actual_only() {
        let mut b = Balloon::new(Backing::Private);
        b.write_config(4, &7u32.to_le_bytes());
        assert_eq!(b.actual(), 7);
        b.write_config(6, &[1]);
        assert_eq!(b.actual(), 0x1_0007);
        for (offset, data) in [
            (0u64, &[1u8, 0, 0, 0][..]),
            (2, &[9; 4][..]),
            (6, &[9; 4][..]),
            (12, &[9; 4][..]),
            (16, &[9][..]),
            (u64::MAX, &[9; 2][..]),
        ] {
            b.write_config(offset, data);
        }
        assert_eq!(b.actual(), 0x1_0007);
        assert_eq!(&b.config_space()[..4], &[0; 4], "num_pages stays 0");
        assert_eq!(&b.config_space()[8..], &[0; 8]);
    }
}
