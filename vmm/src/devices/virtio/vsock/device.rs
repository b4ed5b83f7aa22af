//! virtio-vsock transport side: three queues (rx, tx, event), the guest CID in the
//! configuration space, and the host listener created up front so the host can
//! connect as soon as the VMM runs.

use std::io;
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::muxer::Muxer;
use super::worker::VsockWorker;
use crate::devices::virtio::device::check_queue_count;
use crate::devices::virtio::{
    ActivateContext, ActivateError, VirtioDevice, MAX_QUEUE_SIZE, TYPE_VSOCK, VIRTIO_F_VERSION_1,
};
use crate::event_loop::EventSubscriber;

/// Errors creating the vsock device.
#[derive(Debug, Error)]
pub enum VsockError {
    /// binding the host socket failed
    #[error("cannot listen on vsock socket {path}")]
    Listen {
        /// The socket path.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// The vsock device.
pub struct Vsock {
    muxer: Option<Muxer>,
    config: [u8; 8],
    queue_sizes: [u16; 3],
}

impl Vsock {
    /// A device for guest `cid`, listening on `uds`.
    pub fn new(cid: u64, uds: &Path) -> Result<Vsock, VsockError> {
        let muxer = Muxer::new(cid, uds).map_err(|source| VsockError::Listen {
            path: uds.into(),
            source,
        })?;
        Ok(Vsock {
            muxer: Some(muxer),
            config: cid.to_le_bytes(),
            queue_sizes: [MAX_QUEUE_SIZE; 3],
        })
    }
}

impl VirtioDevice for Vsock {
    fn device_type(&self) -> u32 {
        TYPE_VSOCK
    }

    fn features(&self) -> u64 {
        VIRTIO_F_VERSION_1
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &self.queue_sizes
    }

    fn config_space(&self) -> &[u8] {
        &self.config
    }

    fn activate(&mut self, ctx: ActivateContext) -> Result<Box<dyn EventSubscriber>, ActivateError> {
        check_queue_count(&ctx, 3)?;
        let muxer = self.muxer.take().ok_or(ActivateError::AlreadyActive)?;
        Ok(Box::new(VsockWorker::new(ctx, muxer)))
    }
}
