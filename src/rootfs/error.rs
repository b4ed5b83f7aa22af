//! Errors of flattening: every one names the layer and, for entries, their index.

use std::io;
use std::path::PathBuf;

use super::data::DataError;
use super::erofs::WriteError;
use super::layer::too_long_limit;
use super::path::{InvalidWhiteout, PathError};
use super::tar::TarError;
use super::tree::TreeError;

/// Why flattening an image's layers failed.
#[derive(Debug, thiserror::Error)]
pub enum FlattenError {
    #[error("layer {digest}: entry {entry}")]
    Entry {
        digest: String,
        /// 0-based index of the tar member (extension headers belong to their member).
        entry: u64,
        #[source]
        reason: EntryError,
    },
    #[error("layer {digest}: cannot open blob {path}")]
    OpenLayer {
        digest: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("layer {digest}: uncompressed content has digest {actual}, expected diff_id {expected}")]
    DiffIdMismatch {
        digest: String,
        expected: String,
        actual: String,
    },
    #[error("an image needs at least one layer")]
    NoLayers,
    #[error("more than {limit} layers")]
    TooManyLayers { limit: usize },
    #[error("writing the image metadata failed")]
    Write(#[source] WriteError),
    #[error("{op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("rootfs cache directory {path} is not a directory owned by this user")]
    UnsafeCacheDir { path: PathBuf },
    /// A write to the root disk failed (a full disk, a file size limit): the error
    /// names the disk as well as the layer and entry being written.
    #[error("writing root disk {disk}")]
    DiskWrite {
        disk: PathBuf,
        #[source]
        source: Box<FlattenError>,
    },
}

impl FlattenError {
    /// Names `disk` in an error that came from writing to it; others stay as they are.
    pub fn writing_to(self, disk: &std::path::Path) -> FlattenError {
        let wrote = matches!(
            self,
            FlattenError::Write(WriteError::Io(_))
                | FlattenError::Entry {
                    reason: EntryError::Write(_),
                    ..
                }
        );
        if !wrote {
            return self;
        }
        FlattenError::DiskWrite {
            disk: disk.to_owned(),
            source: Box::new(self),
        }
    }
}

/// Why one tar member was refused.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    #[error(transparent)]
    Tar(TarError),
    #[error(transparent)]
    Path(#[from] PathError),
    #[error(transparent)]
    Whiteout(#[from] InvalidWhiteout),
    #[error(transparent)]
    Tree(#[from] TreeError),
    #[error("writing file data failed")]
    Write(#[source] io::Error),
    #[error("the image would exceed {limit} bytes")]
    ImageTooLarge { limit: u64 },
    #[error("the uncompressed layer exceeds {limit} bytes")]
    LayerTooLarge { limit: u64 },
    #[error("the layer has more than {limit} entries")]
    TooManyEntries { limit: u64 },
    #[error("{what} {value} is out of range")]
    IdOutOfRange { what: &'static str, value: u64 },
    #[error("device number {major}:{minor} is out of range")]
    DeviceOutOfRange { major: u64, minor: u64 },
    #[error("extended attribute `{name}` has no EROFS name prefix")]
    UnsupportedXattr { name: String },
    #[error("extended attributes of the entry exceed {limit} bytes")]
    XattrsTooLarge { limit: usize },
    #[error("symbolic link target of {len} bytes is empty, too long or holds a NUL byte")]
    BadSymlinkTarget { len: usize },
}

impl From<TarError> for EntryError {
    fn from(err: TarError) -> Self {
        match &err {
            TarError::Io(io) => match too_long_limit(io) {
                Some(limit) => EntryError::LayerTooLarge { limit },
                None => EntryError::Tar(err),
            },
            _ => EntryError::Tar(err),
        }
    }
}

impl From<DataError> for EntryError {
    fn from(err: DataError) -> Self {
        match err {
            DataError::Tar(tar) => tar.into(),
            DataError::Write(io) => EntryError::Write(io),
            DataError::ImageTooLarge { limit, .. } => EntryError::ImageTooLarge { limit },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::error_chain;

    #[test]
    fn only_failed_writes_name_the_root_disk() {
        let disk = std::path::Path::new("/store/rootfs/abc.erofs");
        let full = || io::Error::from_raw_os_error(libc::ENOSPC);
        let entry = FlattenError::Entry {
            digest: "sha256:d".into(),
            entry: 5,
            reason: EntryError::Write(full()),
        };
        assert_eq!(
            error_chain(&entry.writing_to(disk)),
            format!(
                "writing root disk /store/rootfs/abc.erofs: layer sha256:d: entry 5: writing file data failed: {}",
                full()
            )
        );
        let metadata = FlattenError::Write(WriteError::Io(full())).writing_to(disk);
        assert!(matches!(metadata, FlattenError::DiskWrite { .. }));
        // A bad layer or an image too large says so without the disk.
        let too_large = FlattenError::Write(WriteError::TooLarge { limit: 9 }).writing_to(disk);
        assert!(matches!(too_large, FlattenError::Write(_)));
        let refused = FlattenError::Entry {
            digest: "sha256:d".into(),
            entry: 1,
            reason: EntryError::TooManyEntries { limit: 2 },
        }
        .writing_to(disk);
        assert!(!error_chain(&refused).contains("root disk"));
    }
}
