//! The host file behind a virtio-blk device.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use thiserror::Error;

/// Sector size of the virtio-blk protocol.
pub const SECTOR_SIZE: u64 = 512;
/// Disk sizes must be a multiple of this (hull's images are built page aligned).
pub const DISK_ALIGNMENT: u64 = 4096;

/// Errors opening a disk.
#[derive(Debug, Error)]
pub enum DiskError {
    /// the file could not be opened
    #[error("cannot open disk {path}")]
    Open {
        /// The disk file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// the size is not a multiple of 4 KiB
    #[error("disk {path} is {size} bytes, not a multiple of {DISK_ALIGNMENT}; pad the image")]
    UnalignedSize {
        /// The disk file.
        path: PathBuf,
        /// Its size.
        size: u64,
    },
}

/// A disk image: the file, its size and whether the guest may write it.
pub struct Disk {
    file: File,
    size: u64,
    read_only: bool,
    id: [u8; 20],
    /// What warnings call the disk: its path, or its id when it came as a file.
    label: String,
}

impl Disk {
    /// Opens `path`; read-only disks are opened `O_RDONLY`, so the guest cannot
    /// write them whatever it negotiates.
    pub fn open(path: &Path, read_only: bool, id: &str) -> Result<Disk, DiskError> {
        let file = OpenOptions::new()
            .read(true)
            .write(!read_only)
            .open(path)
            .map_err(|source| DiskError::Open {
                path: path.into(),
                source,
            })?;
        let size = file
            .metadata()
            .map_err(|source| DiskError::Open {
                path: path.into(),
                source,
            })?
            .len();
        if size % DISK_ALIGNMENT != 0 {
            return Err(DiskError::UnalignedSize {
                path: path.into(),
                size,
            });
        }
        let mut disk = Disk::from_file(file, size, read_only, id);
        disk.label = path.display().to_string();
        Ok(disk)
    }

    /// Wraps an open file of `size` bytes.
    pub fn from_file(file: File, size: u64, read_only: bool, id: &str) -> Disk {
        let mut serial = [0u8; 20];
        for (d, s) in serial.iter_mut().zip(id.bytes()) {
            *d = s;
        }
        Disk {
            file,
            size,
            read_only,
            id: serial,
            label: id.to_owned(),
        }
    }

    /// The disk's path (or id), for messages.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Size in sectors.
    pub fn sectors(&self) -> u64 {
        self.size / SECTOR_SIZE
    }

    /// Whether writes are refused.
    pub fn read_only(&self) -> bool {
        self.read_only
    }

    /// The 20-byte serial returned by GET_ID.
    pub fn id(&self) -> &[u8; 20] {
        &self.id
    }

    /// Reads exactly `buf.len()` bytes at `offset`.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }

    /// Writes all of `buf` at `offset`; refused on a read-only disk.
    pub fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        if self.read_only {
            return Err(io::Error::from(io::ErrorKind::PermissionDenied));
        }
        self.file.write_all_at(buf, offset)
    }

    /// Flushes written data to stable storage.
    pub fn flush(&self) -> io::Result<()> {
        if self.read_only {
            return Ok(());
        }
        self.file.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn disk_open_rejects_sizes_not_multiple_of_4k() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&[0; 4097]).unwrap();
        let err = Disk::open(f.path(), true, "x").err().unwrap();
        assert!(matches!(err, DiskError::UnalignedSize { size: 4097, .. }));
    }

    #[test]
    fn read_only_disk_is_opened_without_write_access() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&[7; 4096]).unwrap();
        let disk = Disk::open(f.path(), true, "base").unwrap();
        // SAFETY: fcntl(F_GETFL) only reads the flags of a valid, owned fd.
        let flags = unsafe { libc::fcntl(std::os::unix::io::AsRawFd::as_raw_fd(&disk.file), libc::F_GETFL) };
        assert_eq!(flags & libc::O_ACCMODE, libc::O_RDONLY);
        assert!(disk.write_at(&[1], 0).is_err());
    }
}
