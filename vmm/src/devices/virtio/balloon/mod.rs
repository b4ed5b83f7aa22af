//! virtio-balloon with free page reporting (virtio spec 1.2, 5.5): memory the guest
//! kernel frees goes back to the host.
//!
//! The host never asks the guest to inflate (`num_pages` stays 0). What it offers is
//! `VIRTIO_BALLOON_F_PAGE_REPORTING`: the guest's page allocator (Linux
//! `mm/page_reporting.c`) puts free blocks of at least 2 MiB on the reporting queue
//! as device-writable buffers, one buffer per block, up to 32 in one chain; the
//! device releases the host pages behind each block and returns the chain. The guest
//! keeps the pages, and the next touch faults in a zeroed one.
//!
//! Queues: `inflateq` (0) and `deflateq` (1) always; `reportingq` only when the driver
//! accepted `PAGE_REPORTING`, and then it is queue 2: the stats and free-page-hint
//! queues that come before it in the spec exist only with features hull does not offer,
//! and the driver numbers the queues it sets up consecutively.
//!
//! Every address, length and PFN comes from the guest: a range is released only when
//! it lies wholly inside one RAM region, trimmed inward to whole host pages
//! ([`release`]); anything else is refused, counted and warned about, and the buffer
//! is returned all the same.

pub mod device;
pub mod release;
pub mod worker;

pub use device::Balloon;
pub use worker::BalloonStats;
