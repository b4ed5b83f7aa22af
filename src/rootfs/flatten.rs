//! The streaming converter: tar layers in, one EROFS image out.

use std::io::{self, BufReader, Read};

use sha2::{Digest as _, Sha256};

use super::apply::apply_entry;
use super::data::DataWriter;
use super::erofs::{self, ImageInfo};
use super::error::{EntryError, FlattenError};
use super::layer::{chain_id, open_uncompressed, too_long_limit, HashingReader, LayerInput};
use super::sink::ImageSink;
use super::tar::TarReader;
use super::tree::{LayerNo, Tree, TreeLimits};
use super::Limits;

const STREAM_BUFFER: usize = 1 << 20;

/// Builds one image from layers applied in order.
pub struct Flattener<S> {
    tree: Tree,
    data: DataWriter<S>,
    limits: Limits,
    diff_ids: Vec<String>,
}

/// A finished image.
#[derive(Debug)]
pub struct Flattened<S> {
    pub sink: S,
    pub info: ImageInfo,
    /// Chain id of the diff ids computed while reading.
    pub chain_id: String,
}

impl<S: ImageSink> Flattener<S> {
    pub fn new(sink: S, limits: Limits) -> Self {
        let tree_limits = TreeLimits {
            max_inodes: limits.max_inodes,
            max_depth: limits.max_depth,
            max_hard_links: limits.max_hard_links,
            max_symlink_follows: limits.max_symlink_follows,
        };
        Flattener {
            tree: Tree::new(tree_limits),
            data: DataWriter::new(sink, limits.max_image_bytes),
            limits,
            diff_ids: Vec::new(),
        }
    }

    /// Applies the next layer from its uncompressed tar stream; returns the stream's
    /// diff id (`sha256:<hex>`), which the caller compares with the expected one.
    pub fn add_layer<R: Read>(&mut self, digest: &str, stream: R) -> Result<String, FlattenError> {
        let layer_no = LayerNo::try_from(self.diff_ids.len() + 1).map_err(|_| FlattenError::TooManyLayers {
            limit: usize::from(LayerNo::MAX),
        })?;
        self.tree.begin_layer(layer_no);
        let hashing = HashingReader::new(stream, self.limits.max_layer_bytes);
        let mut tar = TarReader::new(
            BufReader::with_capacity(STREAM_BUFFER, hashing),
            self.limits.max_extension_bytes,
        );
        let entries = self
            .apply_entries(&mut tar)
            .map_err(|(entry, reason)| entry_error(digest, entry, reason))?;
        let diff_id = drain(tar).map_err(|reason| entry_error(digest, entries, reason))?;
        self.diff_ids.push(diff_id.clone());
        Ok(diff_id)
    }

    /// Applies every member; returns how many there were.
    fn apply_entries<R: Read>(&mut self, tar: &mut TarReader<R>) -> Result<u64, (u64, EntryError)> {
        let mut index = 0u64;
        while let Some(header) = tar.next_entry().map_err(|e| (index, e.into()))? {
            if index >= self.limits.max_entries_per_layer {
                return Err((
                    index,
                    EntryError::TooManyEntries {
                        limit: self.limits.max_entries_per_layer,
                    },
                ));
            }
            apply_entry(&mut self.tree, &mut self.data, tar, &header, &self.limits).map_err(|e| (index, e))?;
            index += 1;
        }
        Ok(index)
    }

    /// Writes the metadata and superblock; the image is complete once this returns.
    pub fn finish(mut self) -> Result<Flattened<S>, FlattenError> {
        let chain_id = chain_id(&self.diff_ids).ok_or(FlattenError::NoLayers)?;
        let uuid = volume_uuid(&chain_id);
        let (end, max_blocks) = (self.data.end_block(), self.data.max_blocks());
        let info =
            erofs::write_image(&self.tree, self.data.sink_mut(), end, max_blocks, uuid).map_err(FlattenError::Write)?;
        Ok(Flattened {
            sink: self.data.into_sink(),
            info,
            chain_id,
        })
    }
}

fn entry_error(digest: &str, entry: u64, reason: EntryError) -> FlattenError {
    FlattenError::Entry {
        digest: digest.to_owned(),
        entry,
        reason,
    }
}

/// Reads what follows the end-of-archive marker, so the digest covers the whole
/// stream, and returns that digest.
fn drain<R: Read>(tar: TarReader<BufReader<HashingReader<R>>>) -> Result<String, EntryError> {
    let mut rest = tar.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(|e| match too_long_limit(&e) {
        Some(limit) => EntryError::LayerTooLarge { limit },
        None => EntryError::Tar(super::tar::TarError::Io(e)),
    })?;
    Ok(rest.into_inner().digest())
}

/// A volume uuid derived from the content, so identical layers give identical bytes.
fn volume_uuid(chain_id: &str) -> [u8; 16] {
    let hash = Sha256::digest(chain_id.as_bytes());
    let mut uuid = [0u8; 16];
    uuid.copy_from_slice(&hash[..16]);
    uuid
}

/// Flattens `layers` into `sink`, verifying each layer's diff id before the image is
/// finished.
pub fn flatten_layers<S: ImageSink>(
    layers: &[LayerInput],
    sink: S,
    limits: &Limits,
) -> Result<Flattened<S>, FlattenError> {
    if layers.is_empty() {
        return Err(FlattenError::NoLayers);
    }
    let mut flattener = Flattener::new(sink, limits.clone());
    for layer in layers {
        let open_error = |source| FlattenError::OpenLayer {
            digest: layer.digest.clone(),
            path: layer.path.clone(),
            source,
        };
        let stream = open_uncompressed(layer).map_err(open_error)?;
        let actual = flattener.add_layer(&layer.digest, stream)?;
        if !actual.eq_ignore_ascii_case(&layer.diff_id) {
            return Err(FlattenError::DiffIdMismatch {
                digest: layer.digest.clone(),
                expected: layer.diff_id.clone(),
                actual,
            });
        }
    }
    flattener.finish()
}
