//! The boot-time mark: the guest writes [`BOOT_MARK_MAGIC`] to [`BOOT_MARK_PORT`]
//! when `/init` starts, and the VMM records the time.

use std::sync::Arc;

use crate::bus::BusDevice;
use crate::timings::Timings;

/// I/O port the guest writes the mark to.
pub const BOOT_MARK_PORT: u64 = 0x03f0;
/// The byte that means "/init started".
pub const BOOT_MARK_MAGIC: u8 = 0x68;

/// Records the guest's `/init` time.
pub struct BootMark {
    timings: Arc<Timings>,
}

impl BootMark {
    /// A mark that records into `timings`.
    pub fn new(timings: Arc<Timings>) -> Self {
        BootMark { timings }
    }
}

impl BusDevice for BootMark {
    fn read(&mut self, _offset: u64, _data: &mut [u8]) {}

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset == 0 && data.first() == Some(&BOOT_MARK_MAGIC) {
            self.timings.guest_init();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn boot_mark_records_only_the_magic_value() {
        let timings = Timings::new(Instant::now(), false);
        let mut mark = BootMark::new(timings.clone());
        mark.write(0, &[0x00]);
        assert!(!timings.init_seen());
        mark.write(0, &[BOOT_MARK_MAGIC]);
        assert!(timings.init_seen());
    }
}
