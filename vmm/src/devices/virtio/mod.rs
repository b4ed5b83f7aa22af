//! virtio devices over the virtio-mmio transport (virtio 1.x).
//!
//! Each device has a transport side (`device.rs`: features, config space, activation)
//! and a queue worker (`worker.rs`: plain functions over `virtio-queue` and guest
//! memory, testable without KVM). [`mmio::MmioTransport`] is the register file the
//! guest driver talks to.

pub mod balloon;
pub mod block;
pub mod chain;
pub mod device;
pub mod fs;
pub mod mmio;
pub mod net;
pub mod rng;
pub mod vsock;

pub use device::{ActivateContext, ActivateError, Interrupt, VirtioDevice};
pub use mmio::MmioTransport;

/// virtio 1.x feature: the device conforms to the 1.0+ spec.
pub const VIRTIO_F_VERSION_1: u64 = 1 << 32;
/// Device types (virtio spec 5).
pub const TYPE_BLOCK: u32 = 2;
/// Network device type.
pub const TYPE_NET: u32 = 1;
/// Entropy device type.
pub const TYPE_RNG: u32 = 4;
/// Memory balloon device type.
pub const TYPE_BALLOON: u32 = 5;
/// File system device type.
pub const TYPE_FS: u32 = 26;
/// Socket device type.
pub const TYPE_VSOCK: u32 = 19;
/// Largest queue size any hull device offers; bounds every descriptor chain.
pub const MAX_QUEUE_SIZE: u16 = 256;
