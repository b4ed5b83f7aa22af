//! Layer inputs: where a layer's blob is, how it is compressed, what it must hash to.

use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::PathBuf;

use sha2::{Digest as _, Sha256};

/// How a layer blob is compressed: the image side's type, so the media type of a layer
/// is interpreted in one place (`image::manifest::layer_compression`).
pub use crate::image::manifest::Compression;

/// One layer of an image, as the image store hands it over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerInput {
    /// `sha256:<hex>` of the blob as stored; names the layer in errors.
    pub digest: String,
    /// `sha256:<hex>` of the uncompressed tar stream, from the image config.
    pub diff_id: String,
    pub compression: Compression,
    /// The blob on disk.
    pub path: PathBuf,
}

/// Opens a layer blob as its uncompressed tar stream.
pub fn open_uncompressed(layer: &LayerInput) -> io::Result<Box<dyn Read>> {
    let file = BufReader::with_capacity(256 << 10, File::open(&layer.path)?);
    Ok(match layer.compression {
        Compression::None => Box::new(file),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(file)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(file)?),
    })
}

/// The uncompressed stream exceeded its byte limit.
#[derive(Debug)]
pub struct StreamTooLong {
    pub limit: u64,
}

impl fmt::Display for StreamTooLong {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the uncompressed layer exceeds {} bytes", self.limit)
    }
}

impl std::error::Error for StreamTooLong {}

/// Hashes and counts what passes through, failing once more than `limit` bytes did.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
    limit: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R, limit: u64) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            count: 0,
            limit,
        }
    }

    /// `sha256:<hex>` of everything read.
    pub fn digest(self) -> String {
        format!("sha256:{}", hex::encode(self.hasher.finalize()))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // Never ask for more than one byte past the limit, so a bomb stops early.
        let allowed = self.limit.saturating_sub(self.count).saturating_add(1);
        let want = buf.len().min(usize::try_from(allowed).unwrap_or(usize::MAX));
        let got = self.inner.read(&mut buf[..want])?;
        self.count += got as u64;
        if self.count > self.limit {
            return Err(io::Error::other(StreamTooLong { limit: self.limit }));
        }
        self.hasher.update(&buf[..got]);
        Ok(got)
    }
}

/// Whether an I/O error is a [`StreamTooLong`], and its limit.
pub fn too_long_limit(err: &io::Error) -> Option<u64> {
    err.get_ref()
        .and_then(|e| e.downcast_ref::<StreamTooLong>())
        .map(|e| e.limit)
}

/// The OCI chain id of a stack of diff ids: the first diff id, then
/// `sha256(previous + " " + next)` for each next layer.
pub fn chain_id<S: AsRef<str>>(diff_ids: &[S]) -> Option<String> {
    let (first, rest) = diff_ids.split_first()?;
    let mut chain = first.as_ref().to_owned();
    for diff_id in rest {
        let joined = format!("{chain} {}", diff_id.as_ref());
        chain = format!("sha256:{}", hex::encode(Sha256::digest(joined.as_bytes())));
    }
    Some(chain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_id_of_one_layer_is_its_diff_id() {
        assert_eq!(chain_id(&["sha256:ab"]).as_deref(), Some("sha256:ab"));
        assert_eq!(chain_id::<&str>(&[]), None);
    }

    #[test]
    fn chain_id_hashes_previous_space_next() {
        let expected = format!("sha256:{}", hex::encode(Sha256::digest(b"sha256:a sha256:b")));
        assert_eq!(chain_id(&["sha256:a", "sha256:b"]), Some(expected));
    }

    #[test]
    fn hashing_reader_stops_past_limit() {
        let mut reader = HashingReader::new(io::repeat(0), 1000);
        let err = io::copy(&mut reader, &mut io::sink()).unwrap_err();
        assert_eq!(too_long_limit(&err), Some(1000));
    }
}
