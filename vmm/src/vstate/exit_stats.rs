//! Counts of vCPU exits by kind and address, printed with `--timings` to show where
//! a guest's time goes (each exit to the VMM is expensive, most of all when nested).

use std::collections::BTreeMap;
use std::sync::Mutex;

/// Most distinct (kind, address) keys kept; the rest are counted together, so a
/// guest touching many addresses cannot grow the table.
pub const MAX_KEYS: usize = 64;

/// Kinds of exits the VMM handles itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ExitKind {
    /// Port read.
    IoIn,
    /// Port write.
    IoOut,
    /// MMIO read.
    MmioRead,
    /// MMIO write.
    MmioWrite,
}

impl ExitKind {
    fn name(self) -> &'static str {
        match self {
            ExitKind::IoIn => "in",
            ExitKind::IoOut => "out",
            ExitKind::MmioRead => "mmio_read",
            ExitKind::MmioWrite => "mmio_write",
        }
    }
}

/// Per-key counts plus the count of exits whose key did not fit.
#[derive(Default)]
struct Counts {
    by_key: BTreeMap<(ExitKind, u64), u64>,
    other: u64,
}

/// Shared exit counters.
#[derive(Default)]
pub struct ExitStats {
    counts: Mutex<Counts>,
}

impl ExitStats {
    /// Counts one exit.
    pub fn record(&self, kind: ExitKind, addr: u64) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = counts.by_key.get_mut(&(kind, addr)) {
            *n += 1;
        } else if counts.by_key.len() < MAX_KEYS {
            counts.by_key.insert((kind, addr), 1);
        } else {
            counts.other += 1;
        }
    }

    /// `vmm-exits total=N <kind>@<addr>=N ...`, the `top` largest first.
    pub fn line(&self, top: usize) -> String {
        let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let total: u64 = counts.by_key.values().sum::<u64>() + counts.other;
        let mut entries: Vec<_> = counts.by_key.iter().collect();
        entries.sort_by(|a, b| b.1.cmp(a.1));
        let mut line = format!("vmm-exits total={total}");
        for ((kind, addr), n) in entries.into_iter().take(top) {
            line.push_str(&format!(" {}@{addr:#x}={n}", kind.name()));
        }
        if counts.other > 0 {
            line.push_str(&format!(" other={}", counts.other));
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_stats_sorts_by_count_and_bounds_keys() {
        let stats = ExitStats::default();
        for _ in 0..3 {
            stats.record(ExitKind::IoOut, 0x3f8);
        }
        stats.record(ExitKind::IoIn, 0x3fd);
        for addr in 0..(MAX_KEYS as u64 + 10) {
            stats.record(ExitKind::MmioRead, 0x1000 + addr);
        }
        let line = stats.line(2);
        assert!(
            line.starts_with(&format!("vmm-exits total={}", 4 + MAX_KEYS + 10)),
            "{line}"
        );
        assert!(line.contains(" out@0x3f8=3 "), "{line}");
        assert!(line.ends_with(" other=12"), "{line}");
    }
}
