//! hull: a rootless container runner giving every container its own KVM micro-VM.
//!
//! Modules follow the data flow of `hull run`: `image` (references, registry, store,
//! archives) and `rootfs` (tar layers to a flattened read-only disk).

pub mod image;
pub mod rootfs;
