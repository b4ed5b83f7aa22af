//! Minimal stderr logging with a per-call-site rate limit.
//!
//! Guest-triggered warnings go through [`warn_limited!`]: a hostile guest can make the
//! same error happen millions of times a second, and the log must stay bounded.

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
                eprintln!("vmm: warning: {} (after {} similar warnings suppressed)", format_args!($($arg)*), dropped);
            } else {
                eprintln!("vmm: warning: {}", format_args!($($arg)*));
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
}
