//! Where image bytes go: a file in production, memory for tests and fuzzing.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Positioned writes into the image being built.
pub trait ImageSink {
    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Sets the final length of the image.
    fn set_len(&mut self, len: u64) -> io::Result<()>;
}

impl ImageSink for &File {
    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.write_all_at(buf, offset)
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        File::set_len(self, len)
    }
}

/// An image held in memory.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MemorySink(pub Vec<u8>);

impl ImageSink for MemorySink {
    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        let start = usize::try_from(offset).map_err(io::Error::other)?;
        let end = start
            .checked_add(buf.len())
            .ok_or_else(|| io::Error::other("offset overflow"))?;
        if self.0.len() < end {
            self.0.resize(end, 0);
        }
        self.0[start..end].copy_from_slice(buf);
        Ok(())
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.0.resize(usize::try_from(len).map_err(io::Error::other)?, 0);
        Ok(())
    }
}
