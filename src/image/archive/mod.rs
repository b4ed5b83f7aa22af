//! Image archives: `docker save` tarballs and OCI image-layout tarballs.
//!
//! `load` reads an archive as one stream. Every regular member is staged into the
//! store's `tmp/` while it is hashed (small JSON members are also kept in memory);
//! once the stream ends the metadata says which members are images, and only members
//! that an image references and whose digests verify are published. Nothing of the
//! archive is ever extracted to a host path of its own.
//!
//! `save` writes one tarball that is both a `docker save` archive (`manifest.json`)
//! and an OCI image layout (`oci-layout`, `index.json`), as Docker 25+ does. Layers
//! are written uncompressed, so their digests are the config's diff_ids.

mod docker;
mod load;
mod member;
mod oci;
mod save;
mod stage;

use std::path::PathBuf;

pub use load::{load, Loaded};
pub use save::{save, save_to_file, AtomicFile};

use super::digest::{Digest, DigestError};
use super::manifest::ManifestError;
use super::reference::ReferenceError;
use super::store::StoreError;

/// Annotation Docker and containerd use for an image's full name in an OCI layout.
pub const IMAGE_NAME: &str = "io.containerd.image.name";
/// Most regular members one archive may hold.
pub const MAX_MEMBERS: usize = 4096;
/// Most bytes of JSON metadata (manifests, configs, indexes) kept in memory.
pub const MAX_METADATA_BYTES: u64 = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("archive is truncated or corrupt after member {after:?}")]
    Stream {
        after: String,
        #[source]
        source: std::io::Error,
    },
    #[error("archive member {member:?}")]
    Member {
        member: String,
        #[source]
        source: std::io::Error,
    },
    #[error("archive member {0:?} has an unsafe name (absolute, '..' or not UTF-8)")]
    MemberName(String),
    #[error("archive member {member:?} has a malformed digest name")]
    MemberDigest {
        member: String,
        #[source]
        source: DigestError,
    },
    #[error("archive link {member:?} points outside the archive or loops")]
    Link { member: String },
    #[error("archive has more than {MAX_MEMBERS} members")]
    TooManyMembers,
    #[error("archive member {member:?}: JSON metadata exceeds {MAX_METADATA_BYTES} bytes")]
    MetadataTooLarge { member: String },
    #[error("archive has neither manifest.json (docker save) nor index.json (OCI layout)")]
    UnknownFormat,
    #[error("archive member {member:?} of image {image} is missing")]
    MissingMember { member: String, image: String },
    #[error("archive member {member:?} is not valid JSON")]
    Json {
        member: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("archive member {member:?} of image {image}")]
    Manifest {
        member: String,
        image: String,
        #[source]
        source: ManifestError,
    },
    #[error("oci-layout declares unsupported version {0:?}")]
    LayoutVersion(String),
    #[error("archive member {member:?} of image {image} does not match its digest: expected {expected}, got {actual}")]
    DigestMismatch {
        member: String,
        image: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("archive member {member:?} of image {image} has {actual} bytes, expected {expected}")]
    SizeMismatch {
        member: String,
        image: String,
        expected: u64,
        actual: u64,
    },
    #[error("layer {member:?} of image {image} does not match diff_id {expected}")]
    DiffId {
        member: String,
        image: String,
        expected: Digest,
    },
    #[error("layer {member:?} of image {image} is not compressed as its media type says")]
    Compression { member: String, image: String },
    #[error("image {image} has {layers} layers but its config lists {diff_ids} diff_ids")]
    LayerCount {
        image: String,
        layers: usize,
        diff_ids: usize,
    },
    #[error("config of image {image} has a malformed diff_id")]
    DiffIdFormat {
        image: String,
        #[source]
        source: DigestError,
    },
    #[error("image {image} has an invalid tag {tag:?}")]
    Tag {
        image: String,
        tag: String,
        #[source]
        source: ReferenceError,
    },
    #[error("index {member:?} has no image for {want}; it offers: {available}")]
    Platform {
        member: String,
        want: String,
        available: String,
    },
    #[error("index {member:?} nests indexes too deeply")]
    NestedIndex { member: String },
    #[error(transparent)]
    StoreLock(#[from] StoreError),
    #[error("image {image}")]
    Store {
        image: String,
        #[source]
        source: StoreError,
    },
    #[error("blob {digest} of image {image} in the store is corrupt: it hashes to {actual}")]
    CorruptBlob {
        image: String,
        digest: Digest,
        actual: Digest,
    },
}

pub type Result<T> = std::result::Result<T, ArchiveError>;

/// The path of a blob inside an archive: `blobs/sha256/<hex>`.
pub fn blob_member(digest: &Digest) -> String {
    format!("blobs/sha256/{}", digest.hex())
}
