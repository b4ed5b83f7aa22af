//! Minimal stderr logging with a per-call-site rate limit and a cap on the whole.
//!
//! Guest-triggered warnings go through [`warn_limited!`]: a hostile guest can make the
//! same error happen millions of times a second, and the log must stay bounded. Each
//! call site prints at most [`BURST`] per [`WINDOW_SECS`], and all of them together at
//! most [`WARNING_BYTES`] over the VMM's life; what is dropped past that is counted and
//! reported when the VMM exits ([`report_dropped`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// How many messages one call site may print per window.
pub const BURST: u64 = 10;
/// Length of the rate-limit window in seconds.
pub const WINDOW_SECS: u64 = 5;

/// State of one rate-limited call site.
#[derive(Debug, Default)]
pub struct RateLimit {
    window: AtomicU64,
    count: AtomicU64,
    suppressed: AtomicU64,
}

impl RateLimit {
    /// A fresh limiter, usable in a `static`.
    pub const fn new() -> Self {
        RateLimit {
            window: AtomicU64::new(0),
            count: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// Decides whether a message may be printed now. Returns the number of messages
    /// suppressed since the last one printed, or `None` when this one must be dropped.
    pub fn admit(&self, now_secs: u64) -> Option<u64> {
        let window = now_secs / WINDOW_SECS;
        if self.window.swap(window, Ordering::Relaxed) != window {
            self.count.store(0, Ordering::Relaxed);
        }
        if self.count.fetch_add(1, Ordering::Relaxed) < BURST {
            Some(self.suppressed.swap(0, Ordering::Relaxed))
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }

    /// Messages dropped and not yet reported.
    pub fn suppressed(&self) -> u64 {
        self.suppressed.load(Ordering::Relaxed)
    }
}

/// Most bytes of warnings one VMM writes (its stderr, the container's `vmm.log`).
pub const WARNING_BYTES: u64 = 1 << 20;

static WARNINGS_WRITTEN: AtomicU64 = AtomicU64::new(0);
static WARNINGS_DROPPED: AtomicU64 = AtomicU64::new(0);

/// Whether a warning of `len` bytes still fits the budget (it is counted as dropped
/// when not).
pub fn admit_bytes(len: usize) -> bool {
    let len = len as u64;
    if WARNINGS_WRITTEN.fetch_add(len, Ordering::Relaxed) + len <= WARNING_BYTES {
        return true;
    }
    WARNINGS_DROPPED.fetch_add(1, Ordering::Relaxed);
    false
}

/// Writes one warning line to stderr if it fits the budget.
pub fn warn(line: std::fmt::Arguments) {
    let line = format!("vmm: warning: {line}\n");
    if admit_bytes(line.len()) {
        use std::io::Write;
        let _ = std::io::stderr().write_all(line.as_bytes());
    }
}

/// Says how many warnings the budget dropped, if any (called once, at exit).
pub fn report_dropped() {
    let dropped = WARNINGS_DROPPED.load(Ordering::Relaxed);
    if dropped > 0 {
        eprintln!("vmm: {dropped} warnings dropped after the first {WARNING_BYTES} bytes");
    }
}

/// Seconds since the epoch, for rate limiting.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Prints a warning to stderr, at most [`BURST`] per [`WINDOW_SECS`] from one call site.
#[macro_export]
macro_rules! warn_limited {
    ($($arg:tt)*) => {{
        static LIMIT: $crate::logger::RateLimit = $crate::logger::RateLimit::new();
        if let Some(dropped) = LIMIT.admit($crate::logger::now_secs()) {
            if dropped > 0 {
                $crate::logger::warn(format_args!("{} (after {} similar warnings suppressed)", format_args!($($arg)*), dropped));
            } else {
                $crate::logger::warn(format_args!($($arg)*));
            }
        }
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_admits_burst_then_drops_and_reports_dropped_count() {
        let limit = RateLimit::new();
        for _ in 0..BURST {
            assert_eq!(limit.admit(100), Some(0));
        }
        assert_eq!(limit.admit(100), None);
        assert_eq!(limit.admit(101), None);
        assert_eq!(limit.suppressed(), 2);
        assert_eq!(limit.admit(100 + WINDOW_SECS), Some(2));
    }

    #[test]
    fn warnings_stop_at_the_byte_budget_and_are_counted() {
        let line = 1000;
        let fit = (WARNING_BYTES / line as u64) as usize;
        assert!((0..fit).all(|_| admit_bytes(line)));
        assert!(!admit_bytes(line));
        assert!(!admit_bytes(1));
        assert_eq!(WARNINGS_DROPPED.load(Ordering::Relaxed), 2);
    }
}
