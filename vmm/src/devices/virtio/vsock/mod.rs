//! virtio-vsock in userspace, with the hybrid Unix-socket model.
//!
//! - Host to guest: the host connects to the device's Unix socket `<uds>`, writes
//!   `CONNECT <port>\n`, and, once the guest accepts, reads `OK <host port>\n`; the
//!   stream then carries the connection's bytes.
//! - Guest to host: a guest connection to host port `P` is connected to the Unix
//!   socket `<uds>_P`; if nothing listens there the guest gets a reset.
//!
//! No `/dev/vhost-vsock`, no root. Memory is bounded: at most [`MAX_CONNECTIONS`]
//! connections, each buffering at most [`BUF_ALLOC`] bytes towards the host, and
//! host data is only read when the guest has both RX buffers and credit.

pub mod device;
pub mod muxer;
pub mod packet;
pub mod worker;

pub use device::{Vsock, VsockError};

/// The host's context id.
pub const HOST_CID: u64 = 2;
/// Most simultaneous connections; more are refused (reset or closed).
pub const MAX_CONNECTIONS: usize = 128;
/// Receive buffer the host side advertises per connection (guest-to-host bytes).
pub const BUF_ALLOC: u32 = 256 * 1024;
/// Largest payload of one packet, either direction.
pub const MAX_PKT_PAYLOAD: usize = 64 * 1024;
