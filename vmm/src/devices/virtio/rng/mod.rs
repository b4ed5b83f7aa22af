//! virtio-rng: entropy from the host's `getrandom(2)`.

pub mod device;
pub mod worker;

pub use device::Rng;
