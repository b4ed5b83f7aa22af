//! The guest agent of hull and the wire protocol it speaks with the host.
//!
//! The agent (`src/main.rs`, binary `hull-agent`) is `/init` of the initramfs hull
//! builds; the protocol types live here so host and guest share one definition.

pub mod archive;
pub mod mounts;
pub mod protocol;
pub mod user;
