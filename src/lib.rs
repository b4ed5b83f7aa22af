//! hull: a rootless container runner giving every container its own KVM micro-VM.
//!
//! Modules follow the data flow of `hull run`: `image` (references, registry, store,
//! archives) `rootfs` (tar layers to a flattened read-only disk) and `container` (records,
//! the per-container monitor, the VMM and agent it drives).

pub mod container;
pub mod error;
pub mod image;
pub mod rootfs;
