//! virtio-blk: several disks, each a host file; read-only disks are opened O_RDONLY
//! and advertised read-only.

pub mod device;
pub mod disk;
pub mod worker;

pub use device::Block;
pub use disk::{Disk, DiskError};
