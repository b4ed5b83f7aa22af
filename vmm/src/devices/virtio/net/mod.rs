//! virtio-net with a user-mode network backend over a Unix stream socket.
//!
//! The backend is `passt` (or anything speaking its framing, which is QEMU's
//! `-netdev stream`): every Ethernet frame is preceded by its length as a 32-bit
//! big-endian integer. hull starts one `passt` per container; the VMM only moves
//! frames, so it needs no root, no tap device and no network namespace.
//!
//! Two queues: RX (frames to the guest) and TX (frames from the guest). Features:
//! VERSION_1, MAC and STATUS; no offloads and no mergeable RX buffers, so every
//! frame fits one RX chain and its 12-byte header is all zero but `num_buffers`.
//!
//! Every TX frame passes the egress filter ([`filter`]) before it reaches the
//! backend: the guest reaches neither the host's loopback nor link-local addresses,
//! and the gateway only when the container opted in.

pub mod device;
pub mod filter;
pub mod frames;
pub mod worker;

pub use device::Net;

/// Length of `struct virtio_net_hdr_mrg_rxbuf` (virtio 1.x always carries `num_buffers`).
pub const NET_HDR_LEN: usize = 12;
/// Largest Ethernet frame accepted either way (64 KiB, passt's largest MTU and header).
pub const MAX_FRAME_LEN: usize = 65_536;
/// Feature: the device has a MAC address in its configuration space.
pub const VIRTIO_NET_F_MAC: u64 = 1 << 5;
/// Feature: the configuration space has a link status field.
pub const VIRTIO_NET_F_STATUS: u64 = 1 << 16;
