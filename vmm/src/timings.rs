//! Startup phase times and the guest's boot-time mark, printed as one machine-readable
//! line (`--timings`): `vmm-timings <phase>_us=<microseconds since start> ...`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Recorded phase times, relative to the VMM's start.
pub struct Timings {
    start: Instant,
    phases: Mutex<Vec<(&'static str, Duration)>>,
    print: bool,
    init_seen: AtomicBool,
}

impl Timings {
    /// Timings relative to `start`; `print` makes phases visible on stderr.
    pub fn new(start: Instant, print: bool) -> Arc<Self> {
        Arc::new(Timings {
            start,
            phases: Mutex::new(Vec::new()),
            print,
            init_seen: AtomicBool::new(false),
        })
    }

    /// Records that `name` finished now.
    pub fn phase(&self, name: &'static str) {
        let at = self.start.elapsed();
        self.phases.lock().unwrap_or_else(|p| p.into_inner()).push((name, at));
    }

    /// Records the guest's `/init` mark (first one only) and prints the line if asked.
    pub fn guest_init(&self) -> bool {
        if self.init_seen.swap(true, Ordering::SeqCst) {
            return false;
        }
        self.phase("guest_init");
        if self.print {
            eprintln!("{}", self.line(None));
        }
        true
    }

    /// Whether the guest has marked `/init`.
    pub fn init_seen(&self) -> bool {
        self.init_seen.load(Ordering::SeqCst)
    }

    /// The machine-readable line; `exit` adds the stop reason.
    pub fn line(&self, exit: Option<&str>) -> String {
        let phases = self.phases.lock().unwrap_or_else(|p| p.into_inner());
        let mut line = String::from("vmm-timings");
        for (name, at) in phases.iter() {
            line.push_str(&format!(" {name}_us={}", at.as_micros()));
        }
        if let Some(reason) = exit {
            line.push_str(&format!(" exit={reason}"));
        }
        line
    }

    /// Whether printing was asked for.
    pub fn enabled(&self) -> bool {
        self.print
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timings_line_lists_phases_in_order_with_exit_reason() {
        let t = Timings::new(Instant::now(), false);
        t.phase("memory");
        t.phase("vcpus");
        let line = t.line(Some("reset"));
        assert!(line.starts_with("vmm-timings memory_us="), "{line}");
        assert!(line.contains(" vcpus_us="), "{line}");
        assert!(line.ends_with(" exit=reset"), "{line}");
    }

    #[test]
    fn guest_init_is_recorded_once() {
        let t = Timings::new(Instant::now(), false);
        assert!(t.guest_init());
        assert!(!t.guest_init());
        assert_eq!(t.line(None).matches("guest_init_us").count(), 1);
    }
}
