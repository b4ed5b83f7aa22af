//! Streaming blob writes: bytes go to a locked temp file while being hashed and
//! counted; only verified content is renamed to its digest.

use std::fs::File;
use std::io::{self, Write};
use std::path::PathBuf;

use sha2::{Digest as _, Sha256};

use super::{fs, io_err, ImageStore, Result, StoreError};
use crate::image::digest::Digest;

/// A blob being written. Dropping it without `commit` removes the temp file.
pub struct BlobWriter {
    store: ImageStore,
    file: io::BufWriter<File>,
    path: PathBuf,
    hasher: Sha256,
    written: u64,
    committed: bool,
}

impl BlobWriter {
    pub(super) fn create(store: &ImageStore) -> Result<BlobWriter> {
        let dir = store.tmp_dir();
        let (file, path) = fs::create_temp(&dir).map_err(io_err("create temp file in", &dir))?;
        Ok(BlobWriter {
            store: store.clone(),
            file: io::BufWriter::with_capacity(256 * 1024, file),
            path,
            hasher: Sha256::new(),
            written: 0,
            committed: false,
        })
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Verifies digest (and size, when known), fsyncs and publishes the blob under its
    /// digest. On mismatch nothing is published.
    pub fn commit(mut self, expected: &Digest, expected_size: Option<u64>) -> Result<Digest> {
        if let Some(size) = expected_size {
            if size != self.written {
                return Err(StoreError::SizeMismatch {
                    digest: expected.clone(),
                    expected: size,
                    actual: self.written,
                });
            }
        }
        let actual = Digest::from_hasher(std::mem::take(&mut self.hasher));
        if &actual != expected {
            return Err(StoreError::DigestMismatch {
                expected: expected.clone(),
                actual,
            });
        }
        self.file.flush().map_err(io_err("write", &self.path))?;
        self.file.get_ref().sync_all().map_err(io_err("sync", &self.path))?;
        let dest = self.store.blob_path(expected);
        fs::publish(&self.path, &dest).map_err(io_err("publish", &dest))?;
        self.committed = true;
        Ok(actual)
    }

    /// Publishes under whatever digest the content has (for content made locally).
    pub fn commit_computed(mut self) -> Result<(Digest, u64)> {
        let digest = Digest::from_hasher(std::mem::take(&mut self.hasher));
        let size = self.written;
        let _lock = self.store.lock_blob(&digest)?;
        if self.store.has_blob(&digest) {
            return Ok((digest, size));
        }
        self.file.flush().map_err(io_err("write", &self.path))?;
        self.file.get_ref().sync_all().map_err(io_err("sync", &self.path))?;
        let dest = self.store.blob_path(&digest);
        fs::publish(&self.path, &dest).map_err(io_err("publish", &dest))?;
        self.committed = true;
        Ok((digest, size))
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
