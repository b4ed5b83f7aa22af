//! The backend's framing: `u32` big-endian length, then the frame. Both directions
//! are buffered and bounded, so a slow guest or a slow backend stalls its own
//! direction instead of growing memory.

use std::io::{self, Read, Write};

use super::MAX_FRAME_LEN;

/// Most bytes waiting to go to the backend (frames from the guest).
pub const MAX_PENDING_OUT: usize = 1 << 20;
/// Bytes read from the backend at once.
const READ_CHUNK: usize = 64 * 1024;

/// Why the backend stream cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// the backend announced a frame larger than any hull accepts
    #[error("the network backend sent a {0}-byte frame")]
    TooLarge(usize),
    /// the backend closed the stream
    #[error("the network backend closed the connection")]
    Closed,
    /// reading or writing the stream failed
    #[error("network backend: {0}")]
    Io(#[from] io::Error),
}

/// Frames from the backend, parsed out of the stream.
#[derive(Default)]
pub struct FrameReader {
    buf: Vec<u8>,
    start: usize,
}

impl FrameReader {
    /// Reads what `source` has (it is non-blocking); `Ok(false)` when it had nothing.
    pub fn fill(&mut self, source: &mut impl Read) -> Result<bool, FrameError> {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        if self.buf.len() - self.start >= 4 + MAX_FRAME_LEN {
            return Ok(false); // a whole frame is waiting for an RX buffer
        }
        let old = self.buf.len();
        self.buf.resize(old + READ_CHUNK, 0);
        let read = source.read(&mut self.buf[old..]);
        match read {
            Ok(0) => {
                self.buf.truncate(old);
                Err(FrameError::Closed)
            }
            Ok(n) => {
                self.buf.truncate(old + n);
                Ok(true)
            }
            Err(e) => {
                self.buf.truncate(old);
                match e.kind() {
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(false),
                    _ => Err(e.into()),
                }
            }
        }
    }

    /// Appends raw stream bytes (tests, and callers that read themselves).
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame, if one is buffered; an oversized length is an error.
    pub fn peek(&self) -> Result<Option<&[u8]>, FrameError> {
        let data = &self.buf[self.start..];
        let Some(len) = data.get(..4) else { return Ok(None) };
        let len = u32::from_be_bytes(len.try_into().expect("four bytes")) as usize;
        if len > MAX_FRAME_LEN {
            return Err(FrameError::TooLarge(len));
        }
        Ok(data.get(4..4 + len))
    }

    /// Drops the frame [`peek`](Self::peek) returned.
    pub fn consume(&mut self) {
        if let Ok(Some(frame)) = self.peek() {
            self.start += 4 + frame.len();
        }
        if self.start > READ_CHUNK && self.start * 2 > self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
    }
}

/// Frames for the backend, waiting for the stream to take them.
#[derive(Default)]
pub struct FrameWriter {
    buf: Vec<u8>,
    start: usize,
}

impl FrameWriter {
    /// Whether a frame of `len` bytes fits.
    pub fn has_room(&self, len: usize) -> bool {
        self.pending() + 4 + len <= MAX_PENDING_OUT
    }

    /// Bytes not yet written.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Queues `frame` with its length prefix.
    pub fn push(&mut self, frame: &[u8]) {
        self.buf.extend_from_slice(&(frame.len() as u32).to_be_bytes());
        self.buf.extend_from_slice(frame);
    }

    /// Writes what `sink` takes (it is non-blocking); returns whether all went.
    pub fn flush(&mut self, sink: &mut impl Write) -> Result<bool, FrameError> {
        while self.start < self.buf.len() {
            match sink.write(&self.buf[self.start..]) {
                Ok(0) => return Err(FrameError::Closed),
                Ok(n) => self.start += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e.into()),
            }
        }
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
            return Ok(true);
        }
        if self.start > MAX_PENDING_OUT / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        Ok(false)
    }

    /// All queued bytes (tests).
    pub fn queued(&self) -> &[u8] {
        &self.buf[self.start..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_split_out_of_a_stream_in_any_pieces() {
        let mut stream = Vec::new();
        for frame in [&b"first"[..], b"", b"third frame"] {
            stream.extend_from_slice(&(frame.len() as u32).to_be_bytes());
            stream.extend_from_slice(frame);
        }
        for split in 0..stream.len() {
            let mut r = FrameReader::default();
            r.push(&stream[..split]);
            let mut got = Vec::new();
            while let Some(f) = r.peek().unwrap() {
                got.push(f.to_vec());
                r.consume();
            }
            r.push(&stream[split..]);
            while let Some(f) = r.peek().unwrap() {
                got.push(f.to_vec());
                r.consume();
            }
            assert_eq!(
                got,
                [b"first".to_vec(), vec![], b"third frame".to_vec()],
                "split at {split}"
            );
        }
    }

    #[test]
    fn an_oversized_length_is_refused_before_buffering_it() {
        let mut r = FrameReader::default();
        r.push(&u32::MAX.to_be_bytes());
        assert!(matches!(r.peek(), Err(FrameError::TooLarge(_))));
    }

    #[test]
    fn the_writer_is_bounded_and_keeps_what_a_full_stream_refused() {
        let mut w = FrameWriter::default();
        assert!(w.has_room(1500));
        w.push(b"abc");
        assert_eq!(w.queued(), b"\0\0\0\x03abc");
        struct TakesTwo(Vec<u8>);
        impl Write for TakesTwo {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                if self.0.len() >= 2 {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                let n = b.len().min(2);
                self.0.extend_from_slice(&b[..n]);
                Ok(n)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut sink = TakesTwo(Vec::new());
        assert!(!w.flush(&mut sink).unwrap());
        assert_eq!(w.queued(), b"\0\x03abc");
        while w.has_room(MAX_FRAME_LEN) {
            w.push(&[0u8; MAX_FRAME_LEN]);
        }
        assert!(w.pending() <= MAX_PENDING_OUT);
    }
}
