//! virtio-net transport side: two queues (rx, tx), a MAC address and a link status in
//! the configuration space, and the backend connection made up front, before the
//! VMM confines itself.

use std::io;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::filter::{EgressFilter, EgressPolicy};
use super::worker::NetWorker;
use super::{VIRTIO_NET_F_MAC, VIRTIO_NET_F_STATUS};
use crate::devices::virtio::device::check_queue_count;
use crate::devices::virtio::{
    ActivateContext, ActivateError, VirtioDevice, MAX_QUEUE_SIZE, TYPE_NET, VIRTIO_F_VERSION_1,
};
use crate::event_loop::EventSubscriber;

/// Link status bit of the configuration space: the link is up.
const LINK_UP: u16 = 1;

/// Errors creating the network device.
#[derive(Debug, Error)]
pub enum NetError {
    /// connecting to the backend's socket failed
    #[error("cannot connect to the network backend at {path}")]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// The network device.
pub struct Net {
    backend: Option<UnixStream>,
    egress: EgressPolicy,
    config: [u8; 8],
    queue_sizes: [u16; 2],
}

impl Net {
    /// A device with address `mac`, its frames going through the stream socket `path`
    /// when `egress` lets them.
    pub fn connect(path: &Path, mac: [u8; 6], egress: EgressPolicy) -> Result<Net, NetError> {
        let err = |source| NetError::Connect {
            path: path.into(),
            source,
        };
        let backend = UnixStream::connect(path).map_err(err)?;
        backend.set_nonblocking(true).map_err(err)?;
        Ok(Self::with_backend(backend, mac, egress))
    }

    /// A device over an already connected backend stream (non-blocking).
    pub fn with_backend(backend: UnixStream, mac: [u8; 6], egress: EgressPolicy) -> Net {
        let mut config = [0u8; 8];
        config[..6].copy_from_slice(&mac);
        config[6..].copy_from_slice(&LINK_UP.to_le_bytes());
        Net {
            backend: Some(backend),
            egress,
            config,
            queue_sizes: [MAX_QUEUE_SIZE; 2],
        }
    }
}

impl VirtioDevice for Net {
    fn device_type(&self) -> u32 {
        TYPE_NET
    }

    fn features(&self) -> u64 {
        VIRTIO_F_VERSION_1 | VIRTIO_NET_F_MAC | VIRTIO_NET_F_STATUS
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &self.queue_sizes
    }

    fn config_space(&self) -> &[u8] {
        &self.config
    }

    fn activate(&mut self, ctx: ActivateContext) -> Result<Box<dyn EventSubscriber>, ActivateError> {
        check_queue_count(&ctx, 2)?;
        let backend = self.backend.take().ok_or(ActivateError::AlreadyActive)?;
        Ok(Box::new(NetWorker::new(
            ctx,
            backend,
            EgressFilter::new(self.egress.clone()),
        )))
    }
}
