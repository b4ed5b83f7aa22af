//! virtio-fs (device type 26) with its file system server in another process.
//!
//! The server is a vhost-user backend — `virtiofsd`, one per shared directory,
//! started by hull before the VMM. The VMM connects to its socket, negotiates
//! features, and on activation shares guest memory (a memfd, see
//! [`crate::memory::Backing::Shared`]) and the rings: the backend reads the guest's
//! FUSE requests straight from guest memory. What is left for the VMM:
//!
//! - the configuration space (mount tag and request queue count), served by hull;
//! - kicks: the transport's per-queue eventfds are handed to the backend as its
//!   kick fds, so a guest notify reaches virtiofsd without passing the VMM's loop;
//! - calls: the backend signals one eventfd per queue; the worker turns each into
//!   the device's interrupt (status bit + irqfd);
//! - a hung-up backend: the device is marked broken; the rest of the VM goes on.
//!
//! Two queues: `hiprio` (FORGET and interrupts) and one request queue.
//!
//! The vhost-user session is set up from the device thread (the worker's `init`),
//! so vCPU threads keep a seccomp filter with no socket calls.

pub mod device;
pub mod session;
pub mod worker;

pub use device::{Fs, FsError};

/// Queues: hiprio and one request queue.
pub const NUM_QUEUES: usize = 2;
/// Size of each queue offered to the driver.
pub const QUEUE_SIZE: u16 = 1024;
