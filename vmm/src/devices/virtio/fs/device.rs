//! virtio-fs transport side: the mount tag in the configuration space, features
//! offered as the backend allows, and the backend connection made up front, before
//! the VMM confines itself.

use std::path::{Path, PathBuf};

use thiserror::Error;
use vhost::vhost_user::message::VhostUserProtocolFeatures;
use vhost::vhost_user::{Frontend, VhostUserFrontend};
use vhost::VhostBackend;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::worker::FsWorker;
use super::{NUM_QUEUES, QUEUE_SIZE};
use crate::config::FS_TAG_MAX;
use crate::devices::virtio::device::check_queue_count;
use crate::devices::virtio::{ActivateContext, ActivateError, VirtioDevice, TYPE_FS, VIRTIO_F_VERSION_1};
use crate::event_loop::EventSubscriber;

/// vhost-user feature bit: the backend speaks the protocol-features extension.
pub const VHOST_USER_F_PROTOCOL_FEATURES: u64 = 1 << 30;
/// Ring features passed through when the backend has them (the backend runs the rings).
const RING_FEATURES: u64 = (1 << 28) | (1 << 29); // INDIRECT_DESC, EVENT_IDX

/// Errors creating the device.
#[derive(Debug, Error)]
pub enum FsError {
    /// connecting to the backend failed
    #[error("cannot connect to the virtio-fs backend at {path}")]
    Connect {
        /// The socket.
        path: PathBuf,
        /// Why.
        #[source]
        source: vhost::Error,
    },
    /// the backend refused or failed a setup request
    #[error("virtio-fs backend at {path}: {what} failed")]
    Handshake {
        /// The socket.
        path: PathBuf,
        /// The request.
        what: &'static str,
        /// Why.
        #[source]
        source: vhost::Error,
    },
    /// the backend does not offer virtio 1.x
    #[error("virtio-fs backend at {path} does not offer VIRTIO_F_VERSION_1 (features {features:#x})")]
    NoVersion1 {
        /// The socket.
        path: PathBuf,
        /// What it offered.
        features: u64,
    },
    /// the tag does not fit the configuration space
    #[error("virtio-fs tag {0:?} is longer than {FS_TAG_MAX} bytes")]
    Tag(String),
    /// the call eventfds could not be created
    #[error("cannot create the virtio-fs call eventfds")]
    EventFd(#[source] std::io::Error),
}

/// A virtio-fs device whose server is a vhost-user backend.
pub struct Fs {
    frontend: Frontend,
    backend_features: u64,
    config: Vec<u8>,
    queue_sizes: [u16; NUM_QUEUES],
    calls: Vec<EventFd>,
}

impl Fs {
    /// Connects to the backend at `socket` and negotiates what can be before the guest runs.
    pub fn connect(tag: &str, socket: &Path) -> Result<Fs, FsError> {
        let config = config_space(tag)?;
        let frontend = Frontend::connect(socket, NUM_QUEUES as u64).map_err(|source| FsError::Connect {
            path: socket.into(),
            source,
        })?;
        let backend_features = handshake(&frontend, socket)?;
        let calls = (0..NUM_QUEUES)
            .map(|_| EventFd::new(EFD_NONBLOCK))
            .collect::<Result<_, _>>()
            .map_err(FsError::EventFd)?;
        Ok(Fs {
            frontend,
            backend_features,
            config,
            queue_sizes: [QUEUE_SIZE; NUM_QUEUES],
            calls,
        })
    }
}

/// SET_OWNER, GET_FEATURES, and the protocol features (none are needed, none acked).
fn handshake(frontend: &Frontend, socket: &Path) -> Result<u64, FsError> {
    let fail = |what| {
        move |source| FsError::Handshake {
            path: socket.into(),
            what,
            source,
        }
    };
    frontend.set_owner().map_err(fail("SET_OWNER"))?;
    let features = frontend.get_features().map_err(fail("GET_FEATURES"))?;
    if features & VIRTIO_F_VERSION_1 == 0 {
        return Err(FsError::NoVersion1 {
            path: socket.into(),
            features,
        });
    }
    if features & VHOST_USER_F_PROTOCOL_FEATURES != 0 {
        let mut frontend = frontend.clone();
        frontend
            .get_protocol_features()
            .map_err(fail("GET_PROTOCOL_FEATURES"))?;
        frontend
            .set_protocol_features(VhostUserProtocolFeatures::empty())
            .map_err(fail("SET_PROTOCOL_FEATURES"))?;
    }
    Ok(features)
}

/// `struct virtio_fs_config`: the tag, NUL padded to 36 bytes, then the number of
/// request queues (little endian).
pub fn config_space(tag: &str) -> Result<Vec<u8>, FsError> {
    if tag.is_empty() || tag.len() > FS_TAG_MAX {
        return Err(FsError::Tag(tag.into()));
    }
    let mut config = vec![0u8; FS_TAG_MAX + 4];
    config[..tag.len()].copy_from_slice(tag.as_bytes());
    config[FS_TAG_MAX..].copy_from_slice(&(NUM_QUEUES as u32 - 1).to_le_bytes());
    Ok(config)
}

impl VirtioDevice for Fs {
    fn device_type(&self) -> u32 {
        TYPE_FS
    }

    fn features(&self) -> u64 {
        VIRTIO_F_VERSION_1 | (self.backend_features & RING_FEATURES)
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &self.queue_sizes
    }

    fn config_space(&self) -> &[u8] {
        &self.config
    }

    fn activate(&mut self, ctx: ActivateContext) -> Result<Box<dyn EventSubscriber>, ActivateError> {
        check_queue_count(&ctx, NUM_QUEUES)?;
        let calls = self
            .calls
            .iter()
            .map(EventFd::try_clone)
            .collect::<Result<_, _>>()
            .map_err(ActivateError::Backend)?;
        let protocol = self.backend_features & VHOST_USER_F_PROTOCOL_FEATURES != 0;
        Ok(Box::new(FsWorker::new(ctx, self.frontend.clone(), calls, protocol)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_space_holds_the_padded_tag_and_one_request_queue() {
        let config = config_space("hullfs0").unwrap();
        assert_eq!(config.len(), 40);
        assert_eq!(&config[..7], b"hullfs0");
        assert!(config[7..36].iter().all(|&b| b == 0));
        assert_eq!(&config[36..], &1u32.to_le_bytes());
        assert_eq!(config_space(&"t".repeat(36)).unwrap()[..36], *"t".repeat(36).as_bytes());
    }

    #[test]
    fn config_space_refuses_empty_and_long_tags() {
        assert!(matches!(config_space(""), Err(FsError::Tag(_))));
        assert!(matches!(config_space(&"t".repeat(37)), Err(FsError::Tag(_))));
    }

    #[test]
    fn a_missing_backend_is_a_connect_error_naming_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("none.sock");
        match Fs::connect("t", &path) {
            Err(e @ FsError::Connect { .. }) => assert!(e.to_string().contains("none.sock"), "{e}"),
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("connected to nothing"),
        }
    }
}
