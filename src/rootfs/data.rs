//! Streams regular-file data from the tar stream straight into the image.
//!
//! Files are placed one after another, each starting on a block boundary, in the
//! order the layers give them. Data of a file a later layer replaces or whites out
//! stays in the image unreferenced: nothing is ever read back or moved.

use std::io::{self, Read};

use super::erofs::format::BLOCK_SIZE;
use super::sink::ImageSink;
use super::tar::{TarError, TarReader};

const COPY_CHUNK: usize = 1 << 20;

/// Why file data could not be placed.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("reading the file's data failed")]
    Tar(#[source] TarError),
    #[error("writing the image failed")]
    Write(#[source] io::Error),
    #[error("a file of {size} bytes would grow the image past {limit} bytes")]
    ImageTooLarge { size: u64, limit: u64 },
}

/// Places file data in the image.
pub struct DataWriter<S> {
    sink: S,
    /// First free block; block 0 holds the superblock.
    next_block: u64,
    max_blocks: u64,
    buf: Vec<u8>,
}

impl<S: ImageSink> DataWriter<S> {
    pub fn new(sink: S, max_image_bytes: u64) -> Self {
        let max_blocks = (max_image_bytes / BLOCK_SIZE).min(u64::from(u32::MAX));
        DataWriter {
            sink,
            next_block: 1,
            max_blocks,
            buf: Vec::new(),
        }
    }

    /// Block after the last file's data.
    pub fn end_block(&self) -> u64 {
        self.next_block
    }

    pub fn max_blocks(&self) -> u64 {
        self.max_blocks
    }

    pub fn sink_mut(&mut self) -> &mut S {
        &mut self.sink
    }

    pub fn into_sink(self) -> S {
        self.sink
    }

    /// Copies the current entry's `size` bytes into the image; returns its first
    /// block (0 for an empty file). The size is checked before any byte is written.
    pub fn write_entry<R: Read>(&mut self, tar: &mut TarReader<R>, size: u64) -> Result<u32, DataError> {
        if size == 0 {
            return Ok(0);
        }
        let blocks = size.div_ceil(BLOCK_SIZE);
        if self.next_block.saturating_add(blocks) > self.max_blocks {
            return Err(DataError::ImageTooLarge {
                size,
                limit: self.max_blocks * BLOCK_SIZE,
            });
        }
        let start = self.next_block;
        self.copy(tar, start * BLOCK_SIZE, size)?;
        self.next_block += blocks;
        // `start` < max_blocks <= u32::MAX.
        Ok(start as u32)
    }

    fn copy<R: Read>(&mut self, tar: &mut TarReader<R>, offset: u64, size: u64) -> Result<(), DataError> {
        if self.buf.is_empty() {
            self.buf = vec![0; COPY_CHUNK];
        }
        let mut done = 0u64;
        while done < size {
            let got = tar.read_data(&mut self.buf).map_err(DataError::Tar)?;
            if got == 0 {
                return Err(DataError::Tar(TarError::TruncatedData { missing: size - done }));
            }
            self.sink
                .write_at(&self.buf[..got], offset + done)
                .map_err(DataError::Write)?;
            done += got as u64;
        }
        Ok(())
    }
}
