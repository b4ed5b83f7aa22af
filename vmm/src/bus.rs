//! Address buses: guest port I/O and MMIO accesses routed to the device that owns the
//! address. One `Bus` for each address space, shared by all vCPUs.

use std::sync::{Arc, Mutex};

use thiserror::Error;

/// A device reachable through a bus. `offset` is relative to the device's base.
pub trait BusDevice: Send {
    /// Handles a guest read; `data` is pre-filled with zeros.
    fn read(&mut self, offset: u64, data: &mut [u8]);
    /// Handles a guest write.
    fn write(&mut self, offset: u64, data: &[u8]);
}

/// A device shared between the bus and its owner.
pub type SharedDevice = Arc<Mutex<dyn BusDevice>>;

/// Errors inserting a device.
#[derive(Debug, Error)]
pub enum BusError {
    /// the range overlaps another device's or is empty
    #[error("bus range {base:#x}+{len:#x} overlaps another device or is empty")]
    Overlap {
        /// Range base.
        base: u64,
        /// Range length.
        len: u64,
    },
}

struct BusRange {
    base: u64,
    len: u64,
    device: SharedDevice,
}

/// Sorted, non-overlapping address ranges.
#[derive(Default)]
pub struct Bus {
    ranges: Vec<BusRange>,
}

impl Bus {
    /// An empty bus.
    pub fn new() -> Self {
        Bus::default()
    }

    /// Adds `device` at `base..base+len`.
    pub fn insert(&mut self, device: SharedDevice, base: u64, len: u64) -> Result<(), BusError> {
        let end = base
            .checked_add(len)
            .filter(|_| len > 0)
            .ok_or(BusError::Overlap { base, len })?;
        if self.ranges.iter().any(|r| base < r.base + r.len && r.base < end) {
            return Err(BusError::Overlap { base, len });
        }
        let at = self.ranges.partition_point(|r| r.base < base);
        self.ranges.insert(at, BusRange { base, len, device });
        Ok(())
    }

    fn find(&self, addr: u64, size: usize) -> Option<(&BusRange, u64)> {
        let at = self.ranges.partition_point(|r| r.base <= addr).checked_sub(1)?;
        let range = &self.ranges[at];
        let offset = addr - range.base;
        let end = offset.checked_add(size as u64)?;
        (end <= range.len).then_some((range, offset))
    }

    /// Routes a read. Returns false when nothing owns the whole access.
    pub fn read(&self, addr: u64, data: &mut [u8]) -> bool {
        data.fill(0);
        match self.find(addr, data.len()) {
            Some((range, offset)) => {
                lock(&range.device).read(offset, data);
                true
            }
            None => false,
        }
    }

    /// Routes a write. Returns false when nothing owns the whole access.
    pub fn write(&self, addr: u64, data: &[u8]) -> bool {
        match self.find(addr, data.len()) {
            Some((range, offset)) => {
                lock(&range.device).write(offset, data);
                true
            }
            None => false,
        }
    }
}

/// Locks a device; a poisoned lock still yields the device (its state is plain data).
pub fn lock(device: &SharedDevice) -> std::sync::MutexGuard<'_, dyn BusDevice + 'static> {
    device.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Recorder {
        writes: Vec<(u64, Vec<u8>)>,
    }

    impl BusDevice for Recorder {
        fn read(&mut self, offset: u64, data: &mut [u8]) {
            data.fill(offset as u8);
        }
        fn write(&mut self, offset: u64, data: &[u8]) {
            self.writes.push((offset, data.to_vec()));
        }
    }

    #[test]
    fn bus_routes_to_the_owning_device_with_relative_offset() {
        let dev = Arc::new(Mutex::new(Recorder::default()));
        let mut bus = Bus::new();
        bus.insert(dev.clone(), 0x1000, 0x100).unwrap();
        let mut data = [0u8; 2];
        assert!(bus.read(0x1010, &mut data));
        assert_eq!(data, [0x10, 0x10]);
        assert!(bus.write(0x10fc, &[1, 2, 3, 4]));
        assert_eq!(dev.lock().unwrap().writes, vec![(0xfc, vec![1, 2, 3, 4])]);
    }

    #[test]
    fn bus_refuses_accesses_outside_or_straddling_a_range() {
        let mut bus = Bus::new();
        bus.insert(Arc::new(Mutex::new(Recorder::default())), 0x1000, 0x100)
            .unwrap();
        let mut data = [0u8; 4];
        assert!(!bus.read(0xfff, &mut data));
        assert!(!bus.read(0x10fe, &mut data));
        assert!(!bus.write(0x1100, &[0]));
        assert!(!bus.write(u64::MAX, &[0, 0]));
    }

    #[test]
    fn bus_rejects_overlapping_and_empty_ranges() {
        let mut bus = Bus::new();
        bus.insert(Arc::new(Mutex::new(Recorder::default())), 0x1000, 0x100)
            .unwrap();
        for (base, len) in [(0x10ff, 1), (0xf00, 0x101), (0x2000, 0), (u64::MAX, 2)] {
            let r = bus.insert(Arc::new(Mutex::new(Recorder::default())), base, len);
            assert!(r.is_err(), "{base:#x}+{len}");
        }
        assert!(bus.insert(Arc::new(Mutex::new(Recorder::default())), 0x1100, 1).is_ok());
    }
}
